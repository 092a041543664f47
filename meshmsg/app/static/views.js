// DOM builders. Everything that came from a peer goes in as text (textContent), never as HTML:
// a name or message body can hold anything, and the page must show it, not run it.

export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const TIME = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
export const when = (seconds) => (seconds ? TIME.format(new Date(seconds * 1000)) : "");

// One word for how far a contact is trusted, the same everywhere it is shown. An
// organisation's mark is shown apart from (and below) a check made in person.
export function trustWord(contact) {
  if (!contact) return ["unknown", "not a contact"];
  if (contact.blocked) return ["blocked", "blocked"];
  if (contact.verified) return ["verified", "verified in person"];
  if (contact.org_verified?.length) return ["org", `verified by ${contact.org_verified.join(", ")}`];
  return ["unverified", "unverified"];
}

export function trustBadge(contact) {
  const [kind, text] = trustWord(contact);
  const revoked = contact?.org_revoked?.length
    ? h("span", { class: "badge blocked" }, `revoked by ${contact.org_revoked.join(", ")}`) : null;
  return h("span", { class: "trust" }, h("span", { class: `badge ${kind}` }, text), revoked ? " " : null, revoked);
}

// Rows: { key ("c/<peer>" or "g/<group>"), name, unread, last, trust? } (app.js merges both kinds).
export function conversationList(rows, active) {
  return rows.map((row) => {
    const current = row.key === active;
    const last = row.last ?? "";
    return h("li", { class: current ? "active" : "", dataset: { key: row.key } },
      h("a", { href: `#/${row.key}`, "aria-current": current ? "page" : false }, row.name),
      row.unread ? h("span", { class: "unread", "aria-label": `${row.unread} unread` }, String(row.unread)) : null,
      row.group ? h("span", { class: "kind" }, `group · ${row.members}`)
        : h("span", { class: `kind trust-${trustWord(row.contact)[0]}` }, trustWord(row.contact)[1]),
      h("p", { class: "last" }, last.length > 80 ? `${last.slice(0, 80)}…` : last));
  });
}

const STEPS = ["queued", "relayed", "delivered", "read"];

function timeline(message) {
  const reached = new Map(message.timeline.map((step) => [step.status, step.at]));
  const last = Math.max(...STEPS.map((step, i) => (reached.has(step) ? i : -1)));
  // A step passed over (a direct delivery is never "relayed") is left out, not "not yet".
  const shown = STEPS.filter((step, i) => reached.has(step) || i > last);
  const items = message.direction === "out"
    ? shown.map((step) => h("li", { class: reached.has(step) ? "done" : "todo" },
        `${step}: ${reached.has(step) ? when(reached.get(step)) : "not yet"}`))
    : message.timeline.map((step) => h("li", { class: "done" }, `${step.status}: ${when(step.at)}`));
  // A sender's copy starts at a random hop count (privacy): 1 means it came over the sender's
  // own link; anything more only says a relay carried it.
  const hops = message.hops ? (message.hops === 1 ? " · direct" : " · relayed") : "";
  return h("details", { class: "timeline" },
    h("summary", {}, `${message.status}${hops}`),
    h("ol", { "aria-label": "Did it arrive?" }, items));
}

const size = (bytes) => (bytes >= 1048576 ? `${(bytes / 1048576).toFixed(1)} MiB`
  : bytes >= 1024 ? `${(bytes / 1024).toFixed(1)} KiB` : `${bytes} B`);

function attachmentItem(file) {
  const url = `/attachments/${file.attachment_id}/content`;
  const name = file.name ?? "attachment";
  const progress = file.complete ? "" : ` · ${file.held} of ${file.chunks} chunks`;
  return h("li", { class: "attachment", dataset: { attachment: file.attachment_id } },
    file.complete && (file.media_type ?? "").startsWith("image/")
      ? h("img", { src: url, alt: name, class: "preview", loading: "lazy" }) : null,
    file.complete ? h("a", { href: url, download: name }, `Download ${name}`) : h("span", {}, name),
    ` (${size(file.size ?? 0)}${progress})`,
    file.complete ? null : h("progress", { max: file.chunks, value: file.held, "aria-label": `${name} progress` }));
}

export function messageItem(message, files = []) {
  return h("li", { class: `message ${message.direction}`, dataset: { id: message.message_id } },
    message.body ? h("p", { class: "body" }, message.body) : null,
    files.length ? h("ul", { class: "attachments", "aria-label": "Attachments" }, files.map(attachmentItem)) : null,
    h("p", { class: "meta" },
      h("time", { datetime: new Date(message.sent_at * 1000).toISOString() }, when(message.sent_at)),
      " ", timeline(message)));
}

export function conversationView(peer, contact, messages, onSend, files = new Map(), onFile = null) {
  const name = contact?.name ?? `${peer.slice(0, 8)}…`;
  const list = h("ol", { class: "messages", "aria-label": `Messages with ${name}` },
    messages.map((m) => messageItem(m, files.get(m.message_id) ?? [])));
  const box = h("textarea", { id: "composer", rows: 2, required: true, "aria-label": "Message" });
  const file = h("input", { type: "file", id: "attach", "aria-label": "Attach file" });
  file.addEventListener("change", () => {
    if (file.files.length && onFile) {
      onFile(file.files[0], box.value.trim()).then(() => { file.value = ""; box.value = ""; });
    }
  });
  const form = h("form", { class: "composer", "aria-label": "Write a message" },
    box, file, h("button", { type: "submit" }, "Send"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = box.value.trim();
    if (!text) return;
    box.value = "";  // at once: what is typed while it is on its way must not be wiped
    onSend(text).then(() => box.focus(), () => { if (!box.value) box.value = text; });
  });
  box.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  return h("article", { class: "conversation" },
    h("header", {}, h("h2", {}, name), " ", trustBadge(contact)),
    list, form);
}

export function contactsView(identity, contacts, actions, directory = null) {
  const code = h("textarea", { id: "code", rows: 3, required: true, "aria-label": "Contact code",
    placeholder: "MM1:…", spellcheck: "false" });
  const alias = h("input", { id: "alias", type: "text", "aria-label": "Name (optional)", placeholder: "Name (optional)" });
  const add = h("form", { class: "add-contact", "aria-label": "Add a contact" },
    h("h3", {}, "Add a contact"), code, alias, h("button", { type: "submit" }, "Add contact"));
  add.addEventListener("submit", (event) => {
    event.preventDefault();
    actions.add(code.value.trim(), alias.value.trim()).then(() => { code.value = ""; alias.value = ""; });
  });
  const own = h("section", { class: "own-code", "aria-labelledby": "own-code-title" },
    h("h3", { id: "own-code-title" }, "Your contact code"),
    h("p", { class: "muted" }, "Give it to people who should be able to write to you. It holds no secret."),
    h("code", { class: "code", id: "own-code" }, identity.contact_code),
    h("p", {}, h("button", { type: "button", onclick: () => actions.copy(identity.contact_code) }, "Copy code")),
    h("img", { src: "/id/qr.svg", alt: "QR code of your contact code", class: "qr", width: 220, height: 220 }),
    h("p", {}, "Your fingerprint: ", h("code", {}, identity.fingerprint)));
  const rows = contacts.map((contact) => contactRow(contact, actions));
  return h("article", { class: "contacts" },
    h("h2", {}, "Contacts"),
    h("div", { class: "columns" }, own, add),
    rows.length
      ? h("table", { class: "contact-table" },
          h("caption", {}, "Your contacts"),
          h("thead", {}, h("tr", {}, ["Name", "Trust", "Safety number", "Actions"].map((c) => h("th", { scope: "col" }, c)))),
          h("tbody", {}, rows))
      : h("p", { class: "muted" }, "No contacts yet: paste a contact code above."),
    directory);
}

function contactRow(contact, actions) {
  const safety = h("details", { class: "safety" },
    h("summary", {}, h("code", {}, contact.safety_number)),
    h("p", {}, "Compare this number with the one on their screen, or scan their QR code."),
    h("img", { src: `/contacts/${contact.peer_id}/safety.svg`, alt: `Safety number QR code for ${contact.name}`,
      class: "qr", width: 180, height: 180, loading: "lazy" }));
  const button = (label, fn, extra = {}) =>
    h("button", { type: "button", onclick: fn, "aria-label": `${label} ${contact.name}`, ...extra }, label);
  return h("tr", { dataset: { peer: contact.peer_id } },
    h("th", { scope: "row" }, h("a", { href: `#/c/${contact.peer_id}` }, contact.name)),
    h("td", {}, trustBadge(contact)),
    h("td", {}, safety),
    h("td", { class: "actions" },
      contact.verified
        ? button("Unverify", () => actions.verify(contact, false))
        : button("Mark verified", () => actions.verify(contact, true)),
      button("Rename", () => actions.rename(contact)),
      contact.blocked ? button("Unblock", () => actions.block(contact, false))
        : button("Block", () => actions.block(contact, true)),
      button("Remove", () => actions.remove(contact), { class: "danger" })));
}

function table(caption, columns, rows, empty) {
  if (!rows.length) return h("p", { class: "muted" }, empty);
  // Under its own heading a table needs no caption (a screen reader would say it twice).
  return h("table", {}, caption ? h("caption", {}, caption) : null,
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((c) => h("td", {}, c))))));
}


// The daemon words the warnings (app/warnings.py), the same lines `meshmsg status` prints.
export const warnings = (status) => status.warnings ?? [];

export function statusView(status) {
  const found = warnings(status);
  const peers = status.peers.map((p) => [
    p.name ?? (p.peer_id ? `${p.peer_id.slice(0, 8)}…` : "handshaking"),
    p.contact ? (p.verified ? "verified contact" : "contact") : "relay / stranger",
    p.inbound ? `inbound${p.address ? ` from ${p.address}` : ""}` : `dialled ${p.address ?? ""}`,
    p.synced ? "synced" : "syncing",
  ]);
  const outbox = Object.entries(status.outbox).map(([k, v]) => [k.replaceAll("_", " "), String(v)]);
  const relay = status.relay;
  return h("article", { class: "status" },
    h("h2", {}, "Status"),
    found.length ? h("section", { class: "warnings", "aria-label": "Warnings" },
      h("h3", {}, "Warnings"), h("ul", {}, found.map((w) => h("li", {}, w)))) : null,
    h("dl", { class: "facts" },
      h("dt", {}, "Name"), h("dd", {}, status.name ?? ""),
      h("dt", {}, "Fingerprint"), h("dd", {}, h("code", {}, status.fingerprint)),
      h("dt", {}, "Listening on"), h("dd", {}, status.listen.join(", ")),
      h("dt", {}, "Trusted networks"), h("dd", {}, (status.discovery?.interfaces ?? []).join(", ") || "none"),
      h("dt", {}, "Relay store"), h("dd", {}, `${relay.envelopes} envelopes, ${size(relay.bytes)} of ${size(relay.max_bytes)}`)),
    h("h3", { id: "peers-title" }, "Peers linked now"),
    table(null, ["Peer", "Kind", "Link", "Sync"], peers, "No peer is linked now."),
    h("h3", {}, "Outbox"),
    table(null, ["State", "Messages"], outbox, "Nothing waiting to leave."));
}
