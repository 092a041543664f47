// Group views: create a group, a group's conversation, its members (add, remove, leave).
// As everywhere, what came from peers (names, bodies) goes in as text, never as HTML.

import { h, when } from "/ui/views.js";

export function newGroupView(contacts, onCreate) {
  const name = h("input", { id: "group-name", type: "text", required: true, maxlength: 64,
    "aria-label": "Group name", autocomplete: "off" });
  const boxes = contacts.filter((c) => !c.blocked).map((contact) =>
    h("label", { class: "pick" },
      h("input", { type: "checkbox", value: contact.peer_id }), " ", contact.name));
  const form = h("form", { class: "new-group", "aria-label": "New group" },
    h("h2", {}, "New group"),
    h("p", { class: "muted" }, "You become its admin. Members read what is sent after they are added, not the history."),
    h("label", { for: "group-name" }, "Name"), name,
    h("fieldset", {}, h("legend", {}, "Members"),
      boxes.length ? boxes : h("p", { class: "muted" }, "Add contacts first: a group is made of your contacts.")),
    h("button", { type: "submit" }, "Create group"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const members = boxes.map((label) => label.querySelector("input")).filter((box) => box.checked)
      .map((box) => box.value);
    if (name.value.trim()) onCreate(name.value.trim(), members);
  });
  return form;
}

function groupMessageItem(message) {
  // An own message shows its receipts aggregated: "delivered to 2 of 3", "read by 2 of 3".
  return h("li", { class: `message ${message.direction}`, dataset: { id: message.message_id } },
    message.direction === "in" ? h("p", { class: "sender" }, message.sender) : null,
    h("p", { class: "body" }, message.body),
    h("p", { class: "meta" },
      h("time", { datetime: new Date(message.sent_at * 1000).toISOString() }, when(message.sent_at)),
      message.direction === "out" ? receipts(message) : null));
}

// "read by 2 of 3", and under it each member: read, delivered or sent.
function receipts(message) {
  if (!message.receipts?.length) return h("span", { class: "receipts" }, ` · ${message.status}`);
  return h("details", { class: "timeline receipts" },
    h("summary", {}, ` · ${message.status}`),
    h("ul", { "aria-label": "Receipts by member" },
      message.receipts.map((r) => h("li", { class: r.state === "sent" ? "todo" : "done" }, `${r.name}: ${r.state}`))));
}

function membersPanel(group, contacts, actions) {
  const others = contacts.filter((c) => !c.blocked && !group.members.some((m) => m.peer_id === c.peer_id));
  const rows = group.members.map((member) => h("li", {},
    h("span", {}, member.name), member.admin ? h("span", { class: "badge verified" }, "admin") : null,
    // As `group show`: their sender keys have not reached us, so their messages wait.
    member.keys ? null : h("span", { class: "muted", title: "their messages can be read once you have met them" }, "keys: not yet"),
    group.admin && member.name !== "you"
      ? [h("button", { type: "button", class: "link", "aria-label": member.admin
            ? `Take admin rights from ${member.name}` : `Make ${member.name} an admin`,
          onclick: () => actions.admin(group, member, !member.admin) }, member.admin ? "Take admin rights" : "Make admin"),
        h("button", { type: "button", class: "link danger", "aria-label": `Remove ${member.name}`,
          onclick: () => actions.remove(group, member) }, "Remove")] : null));
  const pick = h("select", { id: "member-to-add", "aria-label": "Contact to add" },
    others.map((c) => h("option", { value: c.peer_id }, c.name)));
  const add = h("form", { class: "add-member", "aria-label": "Add a member" }, pick,
    h("button", { type: "submit" }, "Add member"));
  add.addEventListener("submit", (event) => {
    event.preventDefault();
    if (pick.value) actions.add(group, pick.value);
  });
  return h("details", { class: "members", open: actions.membersOpen },
    h("summary", {}, `Members (${group.members.length})`),
    h("ul", { "aria-label": "Members" }, rows),
    group.admin && group.member
      ? (others.length ? add : h("p", { class: "muted" }, "Every contact of yours is a member.")) : null,
    h("p", { class: "muted" }, `Epoch ${group.epoch}`,
      group.pending_changes ? ` · ${group.pending_changes} changes waiting for earlier ones` : "",
      ` · ${group.note}.`));
}

export function groupView(group, contacts, messages, actions) {
  const list = h("ol", { class: "messages", "aria-label": `Messages in ${group.name}` },
    messages.map(groupMessageItem));
  const box = h("textarea", { id: "composer", rows: 2, required: true, "aria-label": "Message",
    disabled: !group.member });
  const form = h("form", { class: "composer", "aria-label": "Write to the group" },
    box, h("button", { type: "submit", disabled: !group.member }, "Send"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = box.value.trim();
    if (!text) return;
    box.value = "";  // at once: what is typed while it is on its way must not be wiped
    actions.send(group, text).then(() => document.getElementById("composer")?.focus(),
      () => { if (!box.value) box.value = text; });
  });
  box.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  const admins = group.members.filter((m) => m.admin).map((m) => m.name).join(", ");
  return h("article", { class: "conversation group" },
    h("header", {}, h("h2", {}, group.name), " ",
      h("span", { class: "muted" }, `${group.members.length} members · admins: ${admins} · epoch ${group.epoch}`),
      group.member
        ? h("button", { type: "button", class: "danger leave", onclick: () => actions.leave(group) }, "Leave group")
        : h("p", { role: "status" }, "You are no longer a member of this group.")),
    membersPanel(group, contacts, actions),
    list, form);
}
