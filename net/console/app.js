// The operators' console: plain DOM, no framework, nothing from another origin.
// The staff token lives in this closure only (never in storage). Text from the API is
// always set with textContent, never parsed as HTML.
"use strict";
(() => {
  let token = null;
  let socket = null;
  const $ = (id) => document.getElementById(id);
  const cell = (row, text) => { const td = document.createElement("td"); td.textContent = text ?? ""; row.appendChild(td); return td; };

  async function api(method, path, body) {
    const r = await fetch(path, {
      method,
      headers: { "Authorization": "Bearer " + token, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = r.status === 204 ? null : await r.json();
    if (!r.ok) throw new Error(json && json.error ? json.error.code + ": " + json.error.message : String(r.status));
    return json;
  }

  async function refresh() {
    try {
      $("stats").textContent = JSON.stringify(await api("GET", "/v1/admin/stats"), null, 2);
      const trips = await api("GET", "/v1/admin/trips?limit=50");
      const body = $("trips");
      body.replaceChildren();
      for (const t of trips.items) {
        const row = document.createElement("tr");
        cell(row, t.id); cell(row, t.status); cell(row, t.rider_id); cell(row, t.driver_id); cell(row, t.created_at);
        const td = cell(row, "");
        if (!["completed", "cancelled", "expired"].includes(t.status)) {
          const b = document.createElement("button");
          b.textContent = "cancel";
          b.onclick = async () => { await api("POST", "/v1/admin/trips/" + encodeURIComponent(t.id) + "/cancel", { reason: "cancelled by operator" }); refresh(); };
          td.appendChild(b);
        }
        body.appendChild(row);
      }
      const alerts = await api("GET", "/v1/admin/alerts?status=open");
      const list = $("alerts");
      list.replaceChildren();
      for (const a of alerts.items) {
        const li = document.createElement("li");
        li.className = "alert";
        li.textContent = a.raised_at + " trip " + a.trip_id + ": " + (a.note ?? "");
        const b = document.createElement("button");
        b.textContent = "ack";
        b.onclick = async () => { await api("POST", "/v1/admin/alerts/" + encodeURIComponent(a.id) + "/ack", {}); refresh(); };
        li.appendChild(b);
        list.appendChild(li);
      }
      $("status").textContent = "signed in";
    } catch (e) {
      $("status").textContent = "error: " + e.message;
    }
  }

  function connect() {
    if (socket) socket.close();
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + "/v1/ws?token=" + encodeURIComponent(token));
    socket.onopen = () => socket.send(JSON.stringify({ type: "subscribe", channel: "ops" }));
    socket.onmessage = (m) => {
      const f = JSON.parse(m.data);
      if (f.type === "ops_snapshot") {
        $("ops").textContent = f.at + ": " + f.drivers.total + " drivers, " + f.trips.total + " open trips";
        const ul = $("ops-drivers");
        ul.replaceChildren();
        for (const d of f.drivers.items.slice(0, 100)) {
          const li = document.createElement("li");
          li.textContent = d.id + " " + d.availability + " " + d.category + " (" + d.lat.toFixed(4) + ", " + d.lng.toFixed(4) + ")";
          ul.appendChild(li);
        }
      } else if (f.type === "sos_alert" || f.type === "trip_updated") {
        refresh();
      }
    };
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("signin").addEventListener("submit", (e) => {
      e.preventDefault();
      token = $("token").value;
      $("token").value = "";
      refresh();
      connect();
      setInterval(refresh, 10000);
    });
  });
})();
