// The HTTP API (docs/api.md) as the page uses it: JSON both ways, the
// bearer token on every call, and one refresh of an expired access token
// before a call is given up.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code);
    this.status = status;
    this.code = code;
  }
}

export class Api {
  /**
   * @param {() => object|null} stored the tokens as stored (shared by the
   *   browser's tabs): {user_id, access_token, refresh_token}, or null
   * @param {(auth: object|null) => void} onAuth called when tokens change
   */
  constructor(stored, onAuth) {
    this.stored = stored;
    this.auth = stored();
    this.onAuth = onAuth;
    this.refreshing = null;
  }

  async call(method, path, body, retried = false) {
    const headers = {};
    if (body !== undefined) headers["content-type"] = "application/json";
    if (this.auth) headers.authorization = `Bearer ${this.auth.access_token}`;
    const res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (res.status === 204) return null;
    const data = await res.json().catch(() => null);
    if (res.ok) return data;
    const err = data && data.error ? data.error : { code: `HTTP_${res.status}`, message: res.statusText };
    if (res.status === 401 && err.code === "TOKEN_EXPIRED" && !retried && this.auth) {
      await this.refresh();
      return this.call(method, path, body, true);
    }
    throw new ApiError(res.status, err.code, err.message);
  }

  /**
   * Trades the refresh token for new tokens, one refresh at a time across
   * every tab of this browser: a refresh token works once, and a second
   * use ends the whole login (docs/api.md, "Tokens"). A tab that finds
   * the stored tokens already refreshed by another takes those.
   */
  refresh() {
    if (!this.refreshing) {
      const run = () => this.refreshOnce();
      const locked = navigator.locks ? navigator.locks.request("confab.refresh", run) : run();
      this.refreshing = locked.finally(() => {
        this.refreshing = null;
      });
    }
    return this.refreshing;
  }

  async refreshOnce() {
    const stored = this.stored();
    if (stored && this.auth && stored.refresh_token !== this.auth.refresh_token) {
      this.setAuth(stored);
      return stored;
    }
    const token = this.auth && this.auth.refresh_token;
    const res = await fetch("/v1/token/refresh", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ refresh_token: token }),
    });
    const data = await res.json().catch(() => null);
    if (!res.ok) {
      // Only a refused refresh token ends the login; anything else (a
      // node restarting, a rate limit) is worth another try later.
      if (res.status === 401) this.setAuth(null);
      throw new ApiError(res.status, data?.error?.code || `HTTP_${res.status}`, data?.error?.message);
    }
    this.setAuth(data);
    return data;
  }

  setAuth(auth) {
    this.auth = auth;
    this.onAuth(auth);
  }

  async signup(username, password) {
    this.setAuth(await this.call("POST", "/v1/signup", { username, password }));
  }

  async login(username, password) {
    this.setAuth(await this.call("POST", "/v1/login", { username, password }));
  }

  async logout() {
    try {
      await this.call("POST", "/v1/logout");
    } finally {
      this.setAuth(null);
    }
  }

  me() {
    return this.call("GET", "/v1/me");
  }
  user(id) {
    return this.call("GET", `/v1/users/${id}`);
  }
  /** The user called exactly `username`, or null. */
  async findUser(username) {
    const name = username.trim().toLowerCase();
    const { users } = await this.call("GET", `/v1/users?prefix=${encodeURIComponent(name)}&limit=1`);
    return users.length && users[0].username === name ? users[0] : null;
  }
  channels() {
    return this.call("GET", "/v1/channels");
  }
  channel(channelId) {
    return this.call("GET", `/v1/channels/${channelId}`);
  }
  receipts(channelId) {
    return this.call("GET", `/v1/channels/${channelId}/receipts`);
  }
  messages(channelId, query) {
    const q = new URLSearchParams(query).toString();
    return this.call("GET", `/v1/channels/${channelId}/messages?${q}`);
  }
  openDm(userId) {
    return this.call("POST", "/v1/dms", { user_id: userId });
  }
  createGroup(name, members) {
    return this.call("POST", "/v1/groups", { name, members });
  }
  addMembers(channelId, userIds) {
    return this.call("POST", `/v1/groups/${channelId}/members`, { user_ids: userIds });
  }
  friends() {
    return this.call("GET", "/v1/friends");
  }
  befriend(userId) {
    return this.call("POST", `/v1/friends/${userId}`);
  }
  accept(userId) {
    return this.call("POST", `/v1/friends/${userId}/accept`);
  }
  gateway() {
    return this.call("GET", "/v1/gateway");
  }
}
