// The dashboard's only script: live numbers on the overview (short polling of a JSON
// endpoint) and the action buttons (POST with the dashboard's CSRF header).  Values are
// written with textContent, never as markup.
"use strict";

const POLL_MS = 2000;

function show(text, ok) {
  const msg = document.getElementById("msg");
  if (msg) {
    msg.textContent = text;
    msg.className = "msg " + (ok ? "ok" : "error");
  }
}

async function post(url) {
  const resp = await fetch(url, {
    method: "POST", credentials: "same-origin",
    headers: {"X-Eskernel-Csrf": "1"},
  });
  let body = {};
  try { body = await resp.json(); } catch (err) { body = {message: String(err)}; }
  return {ok: resp.ok, body: body};
}

function wireButtons() {
  for (const button of document.querySelectorAll("button[data-post]")) {
    button.addEventListener("click", async () => {
      button.disabled = true;
      const r = await post(button.dataset.post);
      if (r.ok) {
        show("done: " + JSON.stringify(r.body), true);
        window.location.reload();
      } else {
        show((r.body.type || "error") + ": " + (r.body.message || ""), false);
        button.disabled = false;
      }
    });
  }
}

function update(data) {
  for (const el of document.querySelectorAll("[data-stat]")) {
    let v = data[el.dataset.stat];
    if (el.dataset.key !== undefined) { v = v === undefined ? undefined : v[el.dataset.key]; }
    if (el.dataset.field !== undefined && v !== undefined) { v = v[el.dataset.field]; }
    if (v !== undefined) { el.textContent = String(v); }
  }
  for (const bar of document.querySelectorAll("progress[data-bar]")) {
    bar.max = Math.max(data.tasks, 1);
    bar.value = data.counts[bar.dataset.bar] || 0;
  }
  const stamp = document.getElementById("updated");
  if (stamp) { stamp.textContent = "updated " + new Date().toLocaleTimeString(); }
}

function poll(url) {
  const tick = async () => {
    try {
      const resp = await fetch(url, {credentials: "same-origin"});
      if (resp.ok) { update(await resp.json()); }
    } catch (err) {
      // the server may be restarting; the next tick tries again
    }
    window.setTimeout(tick, POLL_MS);
  };
  window.setTimeout(tick, POLL_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  wireButtons();
  const live = document.querySelector("[data-poll]");
  if (live) { poll(live.dataset.poll); }
});
