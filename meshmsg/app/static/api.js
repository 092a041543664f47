// The page's only way to the daemon: the JSON API, with the session cookie and CSRF header.
//
// The token arrives once in the URL fragment (#token=...), which no server or log ever sees; it
// is exchanged for an HttpOnly SameSite=Strict cookie and removed from the address bar at once.

const CSRF = { "X-Meshmsg-CSRF": "1" };

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export async function openSession() {
  const match = /(?:^|[#&])token=([A-Za-z0-9_-]+)/.exec(location.hash);
  if (!match) return false;
  history.replaceState(null, "", location.pathname + "#/");
  await request("POST", "/session", { token: match[1] });
  return true;
}

export async function request(method, path, body) {
  const headers = method === "GET" ? {} : { ...CSRF };
  const init = { method, headers, credentials: "same-origin", cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch {
    throw new ApiError(response.status, `the daemon answered ${response.status}`);
  }
  if (!response.ok) throw new ApiError(response.status, data?.error ?? `error ${response.status}`);
  return data;
}

export const api = {
  status: () => request("GET", "/status"),
  identity: () => request("GET", "/id"),
  contacts: () => request("GET", "/contacts"),
  addContact: (code, name) => request("POST", "/contacts", name ? { code, name } : { code }),
  verify: (peer, verified) => request("POST", `/contacts/${peer}/verify`, { verified }),
  removeContact: (peer) => request("DELETE", `/contacts/${peer}`),
  renameContact: (peer, name) => request("POST", `/contacts/${peer}/rename`, { name }),
  blockContact: (peer, blocked) => request("POST", `/contacts/${peer}/block`, { blocked }),
  conversations: () => request("GET", "/conversations"),
  messages: (peer) => request("GET", `/conversations/${peer}/messages`),
  send: (to, body) => request("POST", "/messages", { to, body }),
  markRead: (peer, ids) => request("POST", "/messages/read", { peer_id: peer, message_ids: ids }),
  logout: () => request("DELETE", "/session"),
  attachments: (peer) => request("GET", `/attachments?peer=${peer}`),
  sendFiles: (to, body, ids) => request("POST", "/messages/files", { to, body, attachments: ids }),
  fetchAttachment: (id) => request("POST", `/attachments/${id}/fetch`, {}),
  // Groups (app/api_groups.py): a group is named by its id (64 hex digits) in every path.
  groups: () => request("GET", "/groups"),
  group: (id) => request("GET", `/groups/${id}`),
  createGroup: (name, members) => request("POST", "/groups", { name, members }),
  addMember: (id, who) => request("POST", `/groups/${id}/members`, { who }),
  removeMember: (id, who) => request("DELETE", `/groups/${id}/members/${who}`),
  leaveGroup: (id) => request("POST", `/groups/${id}/leave`, {}),
  promote: (id, who) => request("POST", `/groups/${id}/admins`, { who }),
  demote: (id, who) => request("DELETE", `/groups/${id}/admins/${who}`),
  groupMessages: (id) => request("GET", `/groups/${id}/messages`),
  sendToGroup: (id, body) => request("POST", `/groups/${id}/messages`, { body }),
  markGroupRead: (id, ids) => request("POST", `/groups/${id}/messages/read`, { message_ids: ids }),
  // Message requests and organisation directories (app/api_firstcontact.py).
  requests: () => request("GET", "/requests"),
  acceptRequest: (peer) => request("POST", `/requests/${peer}/accept`, {}),
  declineRequest: (peer, block) => request("POST", `/requests/${peer}/decline`, { block }),
  orgs: () => request("GET", "/orgs"),
  searchDirectory: (text) => request("GET", `/directory?${new URLSearchParams({ q: text })}`),
  addFromDirectory: (peer) => request("POST", `/directory/${peer}/contact`, {}),
};

// The file goes up as the request body, streamed by the browser (never read into the page);
// the daemon seals it into its chunk store and answers its attachment id.
export async function uploadFile(file) {
  const query = new URLSearchParams({ name: file.name });
  if (file.type) query.set("type", file.type);
  const response = await fetch(`/attachments?${query}`, {
    method: "POST", body: file, credentials: "same-origin",
    headers: { ...CSRF, "Content-Type": "application/octet-stream" },
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, data.error ?? `upload failed (${response.status})`);
  return data;
}

// Live events over a WebSocket (the cookie and the page's Origin authenticate it). Reconnects
// with a doubling delay; onState tells the page whether it is live.
export function subscribe(onEvent, onState) {
  let delay = 500;
  let socket = null;
  const connect = () => {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${location.host}/events`);
    socket.onopen = () => {
      delay = 500;
      onState(true);
    };
    socket.onmessage = (message) => {
      try {
        onEvent(JSON.parse(message.data));
      } catch (error) {
        console.warn("unreadable event", error);
      }
    };
    socket.onclose = () => {
      onState(false);
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 15000);
    };
  };
  connect();
  return () => socket?.close();
}
