// Message requests (strangers who wrote first) and the organisation directory.

import { h, when } from "/ui/views.js";

const short = (peer) => `${peer.slice(0, 8)}…`;

function requestItem(request, actions) {
  const who = `Request from ${short(request.peer_id)}`;
  const org = request.org_verified.length
    ? h("span", { class: "badge org" }, `in the directory of ${request.org_verified.join(", ")}`)
    : h("span", { class: "badge unverified" }, "not in any directory you hold");
  const revoked = request.org_revoked.length
    ? h("span", { class: "badge blocked" }, `revoked by ${request.org_revoked.join(", ")}`) : null;
  const entry = request.org_entry;
  // A request carries no name: the person accepting gives one (else the contact is named
  // after its fingerprint), prefilled from a directory entry when there is one.
  const name = h("input", { type: "text", "aria-label": "Their name", placeholder: "Their name (optional)",
    value: entry?.name ?? "", maxlength: 64, autocomplete: "off" });
  return h("li", {},
    h("section", { class: "request", "aria-label": who },
      h("h3", {}, entry ? `${entry.name} (${[entry.unit, entry.role].filter(Boolean).join(", ")})` : who),
      h("p", {}, org, " ", revoked, " ", h("span", { class: "muted" }, `first wrote ${when(request.first_at)}`)),
      h("p", {}, "Fingerprint: ", h("code", {}, request.fingerprint)),
      h("ol", { class: "request-messages", "aria-label": "Their messages" },
        request.messages.map((m) => h("li", {}, h("p", { class: "body" }, m.body),
          h("p", { class: "meta" }, when(m.sent_at))))),
      h("p", { class: "actions" },
        name, " ",
        h("button", { type: "button", onclick: () => actions.accept(request, name.value.trim()) }, "Accept"),
        h("button", { type: "button", onclick: () => actions.decline(request, false) }, "Decline"),
        h("button", { type: "button", class: "danger", onclick: () => actions.decline(request, true) }, "Block"))));
}

export function requestsView(requests, actions) {
  return h("article", { class: "requests" },
    h("h2", {}, "Message requests"),
    h("p", { class: "muted" },
      "People who have your code but whom you have not added. They get no receipt until you accept; ",
      "Decline deletes the request (they may write again), Block also drops what they send from now on."),
    requests.length ? h("ul", { class: "request-list" }, requests.map((r) => requestItem(r, actions)))
      : h("p", {}, "No message requests."));
}

export function directoryView(orgs, results, query, actions) {
  const box = h("input", { type: "search", id: "directory-query", "aria-label": "Search the directory",
    value: query, placeholder: "Name, unit or role", autocomplete: "off" });
  const form = h("form", { class: "directory-search", role: "search", "aria-label": "Organisation directory" },
    box, h("button", { type: "submit" }, "Search"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (box.value.trim()) actions.search(box.value.trim());
  });
  const rows = (results ?? []).map((r) => [
    r.name, r.unit ?? "", r.role ?? "", r.org,
    r.contact ? h("span", { class: "muted" }, "a contact")
      : h("button", { type: "button", "aria-label": `Add ${r.name} as a contact`,
          onclick: () => actions.add(r) }, "Add contact"),
  ]);
  return h("section", { class: "directory", "aria-labelledby": "directory-title" },
    h("h3", { id: "directory-title" }, "Organisation directory"),
    orgs.length
      ? h("p", { class: "muted" }, `Members of ${orgs.map((o) => `${o.name} (version ${o.serial}, ${o.members} members)`).join(", ")}. `,
          "Someone added from here is verified by the organisation, not in person.")
      : h("p", { class: "muted" }, "You joined no organisation (", h("code", {}, "meshmsg org join MMORG1:…"), ")."),
    orgs.length ? form : null,
    results === null ? null : rows.length
      ? h("table", { "aria-label": "Directory results" },
          h("thead", {}, h("tr", {}, ["Name", "Unit", "Role", "Organisation", ""].map((c) => h("th", { scope: "col" }, c)))),
          h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((c) => h("td", {}, c))))))
      : h("p", { role: "status" }, `Nobody matches “${query}”.`));
}
