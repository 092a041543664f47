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

export function trustBadge(contact) {
  if (!contact) return h("span", { class: "badge unknown" }, "not a contact");
  if (contact.blocked) return h("span", { class: "badge blocked" }, "blocked");
  if (contact.verified) return h("span", { class: "badge verified" }, "verified in person");
  return h("span", { class: "badge unverified" }, "unverified");
}

export function conversationList(rows, active, unread) {
  return rows.map((row) => {
    const name = row.name ?? `${row.peer_id.slice(0, 8)}…`;
    const count = unread.get(row.peer_id) ?? 0;
    const last = row.last ? row.last.body : "";
    return h("li", { class: row.peer_id === active ? "active" : "" },
      h("a", { href: `#/c/${row.peer_id}`, "aria-current": row.peer_id === active ? "page" : false }, name),
      count ? h("span", { class: "unread", "aria-label": `${count} unread` }, String(count)) : null,
      h("p", { class: "last" }, last.length > 80 ? `${last.slice(0, 80)}…` : last));
  });
}

const STEPS = ["queued", "relayed", "delivered", "read"];

function timeline(message) {
  const reached = new Map(message.timeline.map((step) => [step.status, step.at]));
  const items = message.direction === "out"
    ? STEPS.map((step) => h("li", { class: reached.has(step) ? "done" : "todo" },
        `${step}: ${reached.has(step) ? when(reached.get(step)) : "not yet"}`))
    : message.timeline.map((step) => h("li", { class: "done" }, `${step.status}: ${when(step.at)}`));
  const hops = message.hops ? ` · ${message.hops} hop${message.hops === 1 ? "" : "s"}` : "";
  return h("details", { class: "timeline" },
    h("summary", {}, `${message.status}${hops}`),
    h("ol", { "aria-label": "Did it arrive?" }, items));
}

export function messageItem(message) {
  return h("li", { class: `message ${message.direction}`, dataset: { id: message.message_id } },
    h("p", { class: "body" }, message.body),
    h("p", { class: "meta" },
      h("time", { datetime: new Date(message.sent_at * 1000).toISOString() }, when(message.sent_at)),
      " ", timeline(message)));
}

export function conversationView(peer, contact, messages, onSend) {
  const name = contact?.name ?? `${peer.slice(0, 8)}…`;
  const list = h("ol", { class: "messages", "aria-label": `Messages with ${name}` },
    messages.map(messageItem));
  const box = h("textarea", { id: "composer", rows: 2, required: true, "aria-label": "Message" });
  const file = h("input", { type: "file", id: "attach", "aria-label": "Attach file", disabled: true,
    title: "Attachments are not available in this version" });
  const form = h("form", { class: "composer", "aria-label": "Write a message" },
    box, h("label", { class: "attach", for: "attach" }, "📎", h("span", { class: "visually-hidden" }, "Attach file")),
    file, h("button", { type: "submit" }, "Send"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = box.value.trim();
    if (text) onSend(text).then(() => { box.value = ""; box.focus(); });
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

export function contactsView(identity, contacts, actions) {
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
      : h("p", { class: "muted" }, "No contacts yet: paste a contact code above."));
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
  return h("table", {}, h("caption", {}, caption),
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((c) => h("td", {}, c))))));
}

const size = (bytes) => (bytes >= 1048576 ? `${(bytes / 1048576).toFixed(1)} MiB`
  : bytes >= 1024 ? `${(bytes / 1024).toFixed(1)} KiB` : `${bytes} B`);

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
    h("h3", {}, "Peers linked now"),
    table("Peers linked now", ["Peer", "Kind", "Link", "Sync"], peers, "No peer is linked now."),
    h("h3", {}, "Outbox"),
    table("Outbox", ["State", "Messages"], outbox, "Nothing waiting to leave."));
}
