// The page: routes (#/, #/c/<peer>, #/contacts, #/status), live updates, notifications, search.

import { api, ApiError, openSession, subscribe } from "/ui/api.js";
import { contactsView, conversationList, conversationView, h, messageItem, statusView } from "/ui/views.js";

const state = {
  contacts: new Map(),   // peer id -> contact view
  conversations: [],     // rows of GET /conversations
  unread: new Map(),     // peer id -> messages received since the conversation was last open
  open: null,            // peer id of the conversation on screen
  query: "",
};

const $ = (id) => document.getElementById(id);

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
  state.conversations = await api.conversations();
  for (const contact of state.contacts.values()) {
    if (!state.conversations.some((row) => row.peer_id === contact.peer_id)) {
      state.conversations.push({ peer_id: contact.peer_id, name: contact.name, last: null });
    }
  }
  renderList();
}

function renderList() {
  const rows = state.conversations.filter((row) => {
    if (!state.query) return true;
    const name = (row.name ?? "").toLowerCase();
    return name.includes(state.query) || (row.last?.body ?? "").toLowerCase().includes(state.query);
  });
  $("conversation-list").replaceChildren(...conversationList(rows, state.open, state.unread));
}

async function showConversation(peer) {
  state.open = peer;
  state.unread.delete(peer);
  renderList();
  const messages = await api.messages(peer);
  const shown = state.query
    ? messages.filter((m) => m.body.toLowerCase().includes(state.query)) : messages;
  $("search-results-summary").textContent = state.query
    ? `${shown.length} of ${messages.length} messages match “${state.query}”` : "";
  const view = conversationView(peer, state.contacts.get(peer), shown, (text) =>
    guarded(async () => {
      const message = await api.send(peer, text);
      upsertMessage(message);
      await loadConversations();
    }));
  $("view").replaceChildren(view);
  view.querySelector(".messages").lastElementChild?.scrollIntoView({ block: "end" });
  await markRead(peer, messages);
}

async function markRead(peer, messages) {
  const unread = messages.filter((m) => m.direction === "in").map((m) => m.message_id);
  if (unread.length && state.contacts.has(peer) && document.visibilityState === "visible") {
    await api.markRead(peer, unread.slice(-500)).catch(() => {});
  }
}

function upsertMessage(message) {
  const list = document.querySelector(".conversation .messages");
  if (!list || state.open !== message.peer_id) return;
  const existing = list.querySelector(`[data-id="${message.message_id}"]`);
  const item = messageItem(message);
  if (existing) existing.replaceWith(item);
  else {
    list.append(item);
    item.scrollIntoView({ block: "end" });
  }
}

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

async function refreshContacts() {
  await loadContacts();
  await loadConversations();
  if (location.hash.startsWith("#/contacts")) await route();
}

async function route() {
  const hash = location.hash || "#/";
  document.querySelectorAll("[data-tab]").forEach((tab) => {
    const current = (tab.dataset.tab === "contacts" && hash.startsWith("#/contacts"))
      || (tab.dataset.tab === "status" && hash.startsWith("#/status"))
      || (tab.dataset.tab === "chats" && (hash === "#/" || hash.startsWith("#/c/")));
    if (current) tab.setAttribute("aria-current", "page");
    else tab.removeAttribute("aria-current");
  });
  if (hash.startsWith("#/c/")) {
    await showConversation(hash.slice(4));
    return;
  }
  state.open = null;
  renderList();
  if (hash.startsWith("#/contacts")) {
    const identity = await api.identity();
    $("view").replaceChildren(contactsView(identity, [...state.contacts.values()], contactActions));
  } else if (hash.startsWith("#/status")) {
    $("view").replaceChildren(statusView(await api.status()));
  } else {
    $("view").replaceChildren(h("article", { class: "welcome" },
      h("h2", {}, "Conversations"),
      h("p", {}, state.conversations.length
        ? "Choose a conversation on the left."
        : "No conversations yet. Add a contact under Contacts, then write to them.")));
  }
}

function notify(title, body) {
  if (document.visibilityState === "visible" || !("Notification" in window)) return;
  if (Notification.permission === "granted") new Notification(title, { body });
}

async function onEvent(event) {
  switch (event.type) {
    case "message_received": {
      const peer = event.peer_id;
      const name = state.contacts.get(peer)?.name ?? "Someone";
      if (state.open === peer && document.visibilityState === "visible") {
        await showConversation(peer);
      } else {
        state.unread.set(peer, (state.unread.get(peer) ?? 0) + 1);
        notify(`New message from ${name}`, event.body ?? "");
      }
      await loadConversations();
      break;
    }
    case "message_status_changed":
      if (state.open === event.peer_id) {
        const messages = await api.messages(event.peer_id);
        const changed = messages.find((m) => m.message_id === event.message_id);
        if (changed) upsertMessage(changed);
      }
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
    if (state.open) showConversation(state.open);
    else $("search-results-summary").textContent = "";
  });
  window.addEventListener("hashchange", () => route().catch((e) => toast(e.message)));
  document.addEventListener("click", () => {
    if ("Notification" in window && Notification.permission === "default") Notification.requestPermission();
  }, { once: true });
  subscribe((event) => onEvent(event).catch((e) => toast(e.message)), setConnection);
  await route();
}

start();
