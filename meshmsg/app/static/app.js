// The page: routes (#/, #/c/<peer>, #/g/<group>, #/groups/new, #/contacts, #/requests,
// #/status), live updates, notifications, search.

import { api, ApiError, openSession, subscribe, uploadFile } from "/ui/api.js";
import { groupView, newGroupView } from "/ui/groups.js";
import { directoryView, requestsView } from "/ui/people.js";
import { contactsView, conversationList, conversationView, h, messageItem, statusView } from "/ui/views.js";

const state = {
  contacts: new Map(),   // peer id -> contact view
  conversations: [],     // rows of GET /conversations (unread counts kept by the daemon)
  groups: [],            // rows of GET /groups (unread counts kept by the daemon)
  requests: [],          // GET /requests
  open: null,            // "c/<peer>" or "g/<group>" on screen
  query: "",
  directory: { query: "", results: null },
  membersOpen: false,    // the group's member panel stays open across live re-renders
  rendered: null,        // the conversation the view shows (its composer's draft is kept)
};

const $ = (id) => document.getElementById(id);
const arrived = (m) => m.received_at ?? m.sent_at;

function toast(text) {
  const box = $("toast");
  box.textContent = text;
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.hidden = true; }, 6000);
}

async function guarded(work) {
  try {
    return await work();
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      showLoggedOut();
    } else {
      toast(error.message);
    }
    throw error;
  }
}

function showLoggedOut() {
  $("view").replaceChildren(h("article", { class: "login" },
    h("h2", {}, "Not signed in"),
    h("p", {}, "Open the web UI with ", h("code", {}, "meshmsg ui"),
      " on this machine: it hands this page the daemon's token once.")));
}

async function loadContacts() {
  const contacts = await api.contacts();
  state.contacts = new Map(contacts.map((c) => [c.peer_id, c]));
}

async function loadConversations() {
  const [conversations, groups, requests] = await Promise.all([
    api.conversations(), api.groups(), api.requests().catch(() => [])]);
  state.conversations = conversations;
  state.groups = groups;
  state.requests = requests;
  renderList();
}

function listRows() {
  const rows = state.conversations.map((row) => ({
    key: `c/${row.peer_id}`, name: row.name ?? `${row.peer_id.slice(0, 8)}…`, unread: row.unread,
    last: row.last?.body ?? "", at: row.last?.sent_at ?? 0, contact: state.contacts.get(row.peer_id),
  }));
  for (const contact of state.contacts.values()) {
    if (!state.conversations.some((row) => row.peer_id === contact.peer_id)) {
      rows.push({ key: `c/${contact.peer_id}`, name: contact.name, unread: 0, last: "", at: 0, contact });
    }
  }
  for (const group of state.groups) {
    rows.push({
      key: `g/${group.group_id}`, name: group.name, unread: group.unread, group: true,
      members: group.members, at: group.last_at ?? 0,
      last: group.last ? `${group.last.sender}: ${group.last.body}` : "",
    });
  }
  return rows.sort((a, b) => b.at - a.at);
}

function renderList() {
  const rows = listRows().filter((row) => !state.query
    || row.name.toLowerCase().includes(state.query) || row.last.toLowerCase().includes(state.query));
  $("conversation-list").replaceChildren(...conversationList(rows, state.open));
  const count = state.requests.length;
  $("requests-count").textContent = count ? ` (${count})` : "";
}

function searchSummary(shown, all) {
  $("search-results-summary").textContent = state.query
    ? `${shown.length} of ${all.length} messages match “${state.query}”` : "";
}

// A live update re-renders the open conversation: what is being typed in its composer, and
// the focus on it, must survive that (they did not: a message arriving wiped a draft).
function showView(view) {
  const box = $("composer");
  const draft = box && state.rendered === state.open ? box.value : "";
  const focused = box !== null && document.activeElement === box;
  $("view").replaceChildren(view);
  state.rendered = state.open;
  const fresh = $("composer");
  if (!fresh) return;
  if (draft) fresh.value = draft;
  if (focused) fresh.focus();
}

async function showConversation(peer) {
  state.open = `c/${peer}`;
  renderList();
  const messages = await api.messages(peer);
  const files = new Map();
  for (const file of await api.attachments(peer).catch(() => [])) {
    if (file.message_id) files.set(file.message_id, [...(files.get(file.message_id) ?? []), file]);
  }
  const shown = state.query
    ? messages.filter((m) => m.body.toLowerCase().includes(state.query)) : messages;
  searchSummary(shown, messages);
  const view = conversationView(peer, state.contacts.get(peer), shown, (text) =>
    guarded(async () => {
      const message = await api.send(peer, text);
      upsertMessage(message);
      await loadConversations();
    }), files, (file, text) =>
    guarded(async () => {
      toast(`Uploading ${file.name}…`);
      const uploaded = await uploadFile(file);
      await api.sendFiles(peer, text, [uploaded.attachment_id]);
      toast(`Sent ${file.name}`);
      await showConversation(peer);
    }));
  showView(view);
  view.querySelector(".messages").lastElementChild?.scrollIntoView({ block: "end" });
  await markRead(peer, messages);
}

// Only what arrived after the daemon's read mark: the mark moves, the count drops, and a
// message already read is not receipted again at every visit.
async function markRead(peer, messages) {
  const row = state.conversations.find((r) => r.peer_id === peer);
  const since = row?.read_up_to ?? 0;
  const unread = messages.filter((m) => m.direction === "in" && Math.round(arrived(m) * 1000) > Math.round(since * 1000))
    .map((m) => m.message_id);
  if (!unread.length || !state.contacts.has(peer) || document.visibilityState !== "visible") return;
  const marked = await api.markRead(peer, unread.slice(-500)).catch(() => null);
  if (marked && row) {
    row.read_up_to = marked.read_up_to;
    row.unread = 0;
    renderList();
  }
}

function upsertMessage(message) {
  const list = document.querySelector(".conversation .messages");
  if (!list || state.open !== `c/${message.peer_id}`) return;
  const existing = list.querySelector(`[data-id="${message.message_id}"]`);
  const item = messageItem(message);
  if (existing) existing.replaceWith(item);
  else {
    list.append(item);
    item.scrollIntoView({ block: "end" });
  }
}

// --- groups --------------------------------------------------------------------------------

const groupActions = {
  send: (group, text) => guarded(async () => {
    await api.sendToGroup(group.group_id, text);
    await showGroup(group.group_id);
    await loadConversations();
  }),
  add: (group, peer) => guarded(async () => {
    state.membersOpen = true;
    await api.addMember(group.group_id, peer);
    await showGroup(group.group_id);
  }),
  remove: (group, member) => guarded(async () => {
    if (!confirm(`Remove ${member.name} from ${group.name}? They will not read what is sent from now on.`)) return;
    state.membersOpen = true;
    await api.removeMember(group.group_id, member.peer_id);
    await showGroup(group.group_id);
  }),
  admin: (group, member, admin) => guarded(async () => {
    state.membersOpen = true;
    if (admin) await api.promote(group.group_id, member.peer_id);
    else await api.demote(group.group_id, member.peer_id);
    await showGroup(group.group_id);
  }),
  leave: (group) => guarded(async () => {
    if (!confirm(`Leave ${group.name}? You will not read what is sent from now on.`)) return;
    await api.leaveGroup(group.group_id);
    await loadConversations();
    await showGroup(group.group_id);
  }),
};

async function showGroup(id) {
  if (state.open !== `g/${id}`) state.membersOpen = false;
  state.open = `g/${id}`;
  renderList();
  const [group, messages] = await Promise.all([api.group(id), api.groupMessages(id)]);
  const shown = state.query
    ? messages.filter((m) => m.body.toLowerCase().includes(state.query)) : messages;
  searchSummary(shown, messages);
  const view = groupView(group, [...state.contacts.values()], shown,
    { ...groupActions, membersOpen: state.membersOpen });
  view.querySelector("details.members").addEventListener("toggle", (event) => {
    state.membersOpen = event.target.open;
  });
  showView(view);
  view.querySelector(".messages").lastElementChild?.scrollIntoView({ block: "end" });
  const unread = messages.filter((m) => m.direction === "in").map((m) => m.message_id);
  const row = state.groups.find((g) => g.group_id === id);
  if (unread.length && row?.unread && document.visibilityState === "visible") {
    await api.markGroupRead(id, unread).catch(() => null);  // the core skips those already read
    row.unread = 0;
    renderList();
  }
}

function showNewGroup() {
  $("view").replaceChildren(newGroupView([...state.contacts.values()], (name, members) =>
    guarded(async () => {
      const group = await api.createGroup(name, members);
      toast(`Created ${group.name}`);
      await loadConversations();
      location.hash = `#/g/${group.group_id}`;
    })));
  $("group-name").focus();
}

// --- contacts, requests, directory ---------------------------------------------------------

const contactActions = {
  add: (code, name) => guarded(async () => {
    const contact = await api.addContact(code, name || undefined);
    toast(`Added ${contact.name}`);
    await refreshContacts();
  }),
  verify: (contact, verified) => guarded(async () => {
    await api.verify(contact.peer_id, verified);
    await refreshContacts();
  }),
  rename: (contact) => guarded(async () => {
    const name = prompt(`New name for ${contact.name}`, contact.name);
    if (name && name.trim()) {
      await api.renameContact(contact.peer_id, name.trim());
      await refreshContacts();
    }
  }),
  block: (contact, blocked) => guarded(async () => {
    await api.blockContact(contact.peer_id, blocked);
    await refreshContacts();
  }),
  remove: (contact) => guarded(async () => {
    if (confirm(`Remove ${contact.name}? Their messages stay in your history.`)) {
      await api.removeContact(contact.peer_id);
      await refreshContacts();
    }
  }),
  copy: (text) => navigator.clipboard?.writeText(text).then(() => toast("Copied")),
};

const directoryActions = {
  search: (text) => guarded(async () => {
    state.directory = { query: text, results: await api.searchDirectory(text) };
    await route();
  }),
  add: (entry) => guarded(async () => {
    const contact = await api.addFromDirectory(entry.peer_id);
    toast(`Added ${contact.name}`);
    state.directory.results = await api.searchDirectory(state.directory.query);
    await refreshContacts();
  }),
};

const requestActions = {
  accept: (request, name) => guarded(async () => {
    let contact = await api.acceptRequest(request.peer_id);
    if (name) contact = await api.renameContact(contact.peer_id, name);
    toast(`${contact.name} is now a contact`);
    await refreshContacts();
  }),
  decline: (request, block) => guarded(async () => {
    await api.declineRequest(request.peer_id, block);
    toast(block ? "Blocked" : "Declined");
    await refreshContacts();
  }),
};

async function refreshContacts() {
  await loadContacts();
  await loadConversations();
  if (location.hash.startsWith("#/contacts") || location.hash.startsWith("#/requests")) await route();
}

async function contactsPage() {
  const [identity, orgs] = await Promise.all([api.identity(), api.orgs().catch(() => [])]);
  const directory = directoryView(orgs, state.directory.results, state.directory.query, directoryActions);
  $("view").replaceChildren(contactsView(identity, [...state.contacts.values()], contactActions, directory));
}

// --- routing and events --------------------------------------------------------------------

const TABS = {
  contacts: (hash) => hash.startsWith("#/contacts"),
  requests: (hash) => hash.startsWith("#/requests"),
  status: (hash) => hash.startsWith("#/status"),
  chats: (hash) => hash === "#/" || /^#\/(c|g|groups)\//.test(hash),
};

async function route() {
  const hash = location.hash || "#/";
  document.querySelectorAll("[data-tab]").forEach((tab) => {
    if (TABS[tab.dataset.tab](hash)) tab.setAttribute("aria-current", "page");
    else tab.removeAttribute("aria-current");
  });
  if (hash.startsWith("#/c/")) return showConversation(hash.slice(4));
  if (hash.startsWith("#/g/")) return showGroup(hash.slice(4));
  state.open = null;
  state.rendered = null;
  renderList();
  if (hash.startsWith("#/groups/new")) showNewGroup();
  else if (hash.startsWith("#/contacts")) await contactsPage();
  else if (hash.startsWith("#/requests")) {
    state.requests = await api.requests();
    renderList();
    $("view").replaceChildren(requestsView(state.requests, requestActions));
  } else if (hash.startsWith("#/status")) {
    $("view").replaceChildren(statusView(await api.status()));
  } else {
    $("view").replaceChildren(h("article", { class: "welcome" },
      h("h2", {}, "Conversations"),
      h("p", {}, state.conversations.length || state.groups.length
        ? "Choose a conversation on the left."
        : "No conversations yet. Add a contact under Contacts, then write to them.")));
  }
  return undefined;
}

function notify(title, body) {
  if (document.visibilityState === "visible" || !("Notification" in window)) return;
  if (Notification.permission === "granted") new Notification(title, { body });
}

const visible = (key) => state.open === key && document.visibilityState === "visible";

async function onEvent(event) {
  switch (event.type) {
    case "message_received": {
      await loadConversations();
      if (visible(`c/${event.peer_id}`)) await showConversation(event.peer_id);
      else notify(`New message from ${state.contacts.get(event.peer_id)?.name ?? "Someone"}`, event.body ?? "");
      break;
    }
    case "group_message_received": {
      await loadConversations();
      const group = state.groups.find((g) => g.group_id === event.group_id);
      if (visible(`g/${event.group_id}`)) await showGroup(event.group_id);
      else notify(`New message in ${group?.name ?? "a group"}`, event.body ?? "");
      break;
    }
    case "group_message_status":
    case "group_changed":
      await loadConversations();
      if (state.open === `g/${event.group_id}`) await showGroup(event.group_id);
      break;
    case "message_requested":
    case "request_dropped":
      await loadConversations();
      if (location.hash.startsWith("#/requests")) await route();
      break;
    case "message_status_changed":
      if (state.open === `c/${event.peer_id}`) {
        const messages = await api.messages(event.peer_id);
        const changed = messages.find((m) => m.message_id === event.message_id);
        if (changed) upsertMessage(changed);
      }
      break;
    case "attachment_progress":
    case "attachment_complete":
    case "attachment_delivered":
      if (state.open?.startsWith("c/")) await showConversation(state.open.slice(2));
      break;
    case "directory_updated":
      await refreshContacts();
      break;
    case "contact_paired":
    case "contact_healed":
    case "peer_connected":
    case "link_closed":
      if (location.hash.startsWith("#/status")) await route();
      break;
    default:
      break;
  }
}

function setConnection(live) {
  $("connection").textContent = live ? "Live" : "Reconnecting…";
  $("connection").className = `connection ${live ? "live" : "down"}`;
}

async function start() {
  try {
    await openSession();
    await loadContacts();
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      showLoggedOut();
      $("connection").textContent = "Signed out";
      return;
    }
    toast(error.message);
    return;
  }
  await loadConversations();
  $("search").addEventListener("input", (event) => {
    state.query = event.target.value.trim().toLowerCase();
    renderList();
    if (state.open) route();
    else $("search-results-summary").textContent = "";
  });
  window.addEventListener("hashchange", () => route().catch((e) => toast(e.message)));
  // Back in view: what arrived while the page was hidden is read now.
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && state.open) route().catch((e) => toast(e.message));
  });
  document.addEventListener("click", () => {
    if ("Notification" in window && Notification.permission === "default") Notification.requestPermission();
  }, { once: true });
  subscribe((event) => onEvent(event).catch((e) => toast(e.message)), setConnection);
  await route();
}

start();
