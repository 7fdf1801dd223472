/* ST Trading Widget: <st-trading-widget broker-uid api-url default-symbol width theme sso-token brand-domain>
 * A self-contained Web Component (seed 003). With sso-token it logs in silently through
 * POST {api-url}/api/auth/sso/token; the session token lives in localStorage["auth_token"] and is sent
 * as "Authorization: Bearer" to the house exchange API (/api/v1/exchange/...). Minimal on purpose:
 * markets, the book, the balance, a limit order form and the open orders with cancel.
 */
(function () {
  "use strict";
  const TOKEN_KEY = "auth_token";
  const CSS = `
    :host { display:block; font:13px/1.4 system-ui, sans-serif; }
    .w { border:1px solid var(--bd); border-radius:6px; padding:10px; background:var(--bg); color:var(--fg); }
    .dark { --bg:#15181e; --fg:#e6e6e6; --bd:#2c313a; --mut:#8b93a1; }
    .light { --bg:#fff; --fg:#1d1f23; --bd:#d8dbe0; --mut:#6b7280; }
    h3 { margin:0 0 8px; font-size:14px; display:flex; justify-content:space-between; }
    table { width:100%; border-collapse:collapse; } td { padding:1px 4px; }
    .bid { color:#26a269; } .ask { color:#e5484d; } .mut { color:var(--mut); }
    input, select, button { font:inherit; padding:3px 6px; margin:2px 0; }
    .row { display:flex; gap:6px; align-items:center; flex-wrap:wrap; }
    .err { color:#e5484d; min-height:1.2em; }
  `;

  class StTradingWidget extends HTMLElement {
    static get observedAttributes() { return ["theme", "width", "default-symbol"]; }

    constructor() {
      super();
      this.root = this.attachShadow({ mode: "open" });
      this.symbol = null;
      this.timer = null;
    }

    get api() { return (this.getAttribute("api-url") || "").replace(/\/$/, ""); }
    get token() { return window.localStorage.getItem(TOKEN_KEY); }

    async connectedCallback() {
      this.symbol = (this.getAttribute("default-symbol") || "BTCUSDT").toLowerCase();
      this.render();
      const sso = this.getAttribute("sso-token");
      if (sso) {
        try { await this.ssoLogin(sso); } catch (e) { this.error(e.message); }
      }
      this.refresh();
      this.timer = window.setInterval(() => this.refresh(), 3000);
    }

    disconnectedCallback() { window.clearInterval(this.timer); }

    attributeChangedCallback() { if (this.root.firstChild) this.render(); }

    async ssoLogin(jwt) {
      const r = await fetch(this.api + "/api/auth/sso/token", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ token: jwt, broker_uid: this.getAttribute("broker-uid") || undefined }),
      });
      const body = await r.json();
      if (!r.ok) throw new Error(body.error || "SSO failed");
      window.localStorage.setItem(TOKEN_KEY, body.token);
      if (body.logout_redirect_url) window.localStorage.setItem("logout_redirect_url", body.logout_redirect_url);
      this.user = body.user;
    }

    async call(method, path, body) {
      const headers = { "Content-Type": "application/json" };
      if (this.token) headers.Authorization = "Bearer " + this.token;
      const r = await fetch(this.api + "/api/v1/exchange" + path, {
        method, headers, body: body ? JSON.stringify(body) : undefined,
      });
      const data = r.status === 204 ? {} : await r.json().catch(() => ({}));
      if (!r.ok) throw new Error(data.error && data.error.message ? data.error.message : (data.error || data.message || r.status));
      return data;
    }

    render() {
      const theme = this.getAttribute("theme") === "light" ? "light" : "dark";
      this.style.width = this.getAttribute("width") || "400px";
      this.root.innerHTML = `<style>${CSS}</style>
        <div class="w ${theme}">
          <h3><select id="sym"></select><span class="mut" id="who"></span></h3>
          <div class="row mut">Balance: <span id="bal">–</span></div>
          <table id="book"></table>
          <div class="row">
            <select id="side"><option value="buy">Buy</option><option value="sell">Sell</option></select>
            <input id="price" placeholder="price" size="8" inputmode="decimal">
            <input id="qty" placeholder="quantity" size="8" inputmode="decimal">
            <button id="place">Place</button>
          </div>
          <div class="err" id="err"></div>
          <table id="open"></table>
          <div class="row"><button id="logout">Log out</button></div>
        </div>`;
      const $ = (id) => this.root.getElementById(id);
      $("sym").addEventListener("change", (e) => { this.symbol = e.target.value; this.refresh(); });
      $("place").addEventListener("click", () => this.place());
      $("logout").addEventListener("click", () => this.logout());
      if (!this.token) $("who").textContent = "not logged in";
    }

    error(msg) { this.root.getElementById("err").textContent = msg || ""; }

    async refresh() {
      const $ = (id) => this.root.getElementById(id);
      try {
        const markets = await this.call("GET", "/markets");
        const list = markets.markets || markets.data || markets || [];
        const sel = $("sym");
        if (Array.isArray(list) && sel.options.length !== list.length) {
          sel.innerHTML = list.map((m) => { const s = (m.symbol || "").toLowerCase(); return `<option value="${s}">${s.toUpperCase()}</option>`; }).join("");
          if (list.length && !list.some((m) => (m.symbol || "").toLowerCase() === this.symbol)) this.symbol = (list[0].symbol || "").toLowerCase();
          sel.value = this.symbol;
        }
        const book = await this.call("GET", `/${this.symbol}/book`);
        const asks = (book.asks || []).slice(0, 5).reverse(), bids = (book.bids || []).slice(0, 5);
        const lvl = (l, cls) => { const p = Array.isArray(l) ? l[0] : l.price, q = Array.isArray(l) ? l[1] : (l.quantity || l.size); return `<tr class="${cls}"><td>${p}</td><td>${q}</td></tr>`; };
        $("book").innerHTML = asks.map((l) => lvl(l, "ask")).join("") + bids.map((l) => lvl(l, "bid")).join("");
        if (this.token) {
          const bal = await this.call("GET", `/${this.symbol}/balance`);
          $("bal").textContent = (bal.balances || []).map((b) => `${b.asset} ${b.available} / ${b.total}`).join("  ·  ");
          const open = await this.call("GET", `/${this.symbol}/orders/open`);
          const orders = open.orders || open.data || [];
          $("open").innerHTML = orders.map((o) => `<tr><td class="${o.side === "buy" ? "bid" : "ask"}">${o.side}</td><td>${o.price}</td><td>${o.quantity}</td><td><button data-id="${o.order_id}">×</button></td></tr>`).join("");
          $("open").querySelectorAll("button").forEach((b) => b.addEventListener("click", () => this.cancel(b.dataset.id)));
        }
        this.error("");
      } catch (e) { this.error(String(e.message || e)); }
    }

    async place() {
      const $ = (id) => this.root.getElementById(id);
      try {
        await this.call("POST", `/${this.symbol}/orders`, { side: $("side").value, order_type: "limit", price: $("price").value, quantity: $("qty").value });
        this.refresh();
      } catch (e) { this.error(String(e.message || e)); }
    }

    async cancel(orderId) {
      try { await this.call("DELETE", `/${this.symbol}/orders/${orderId}`); this.refresh(); } catch (e) { this.error(String(e.message || e)); }
    }

    logout() {
      const next = window.localStorage.getItem("logout_redirect_url");
      window.localStorage.removeItem(TOKEN_KEY);
      window.localStorage.removeItem("logout_redirect_url");
      if (next) window.location.href = next; else this.render();
    }
  }

  if (!window.customElements.get("st-trading-widget")) window.customElements.define("st-trading-widget", StTradingWidget);
})();
