// The console's only script: the live signal stream and chart refresh.
// It is served from this origin, as the Content Security Policy requires.
"use strict";

(function () {
  const list = document.getElementById("signals");
  const state = document.getElementById("stream-state");
  const maxShown = 100;

  function setState(text, cls) {
    if (!state) return;
    state.textContent = text;
    state.className = "stream-state " + (cls || "");
  }

  function text(tag, cls, value) {
    const el = document.createElement(tag);
    if (cls) el.className = cls;
    el.textContent = value;
    return el;
  }

  function show(sig) {
    const empty = list.querySelector(".empty");
    if (empty) empty.remove();
    const li = document.createElement("li");
    li.className = "signal severity-" + (sig.severity || "info");
    li.dataset.detector = sig.detector || "";
    li.dataset.agent = sig.agent || "";
    li.append(text("time", "", new Date(sig.time).toISOString().slice(11, 19)), " ");
    const a = document.createElement("a");
    a.href = "/ui/agents/" + encodeURIComponent(sig.agent);
    a.textContent = sig.agent;
    li.append(a, " ", text("strong", "detector", sig.detector), " ");
    if (sig.severity) li.append(text("span", "severity", sig.severity), " ");
    const req = [sig.method, (sig.host || "") + (sig.path || "")].filter(Boolean).join(" ");
    if (req) li.append(text("code", "", req), " ");
    if (sig.detail) li.append(text("span", "detail", sig.detail));
    list.prepend(li);
    while (list.children.length > maxShown) list.lastElementChild.remove();
  }

  if (list) {
    const agent = list.dataset.agent;
    const src = new EventSource("/ui/events" + (agent ? "?agent=" + encodeURIComponent(agent) : ""));
    src.onopen = () => setState("live", "ok");
    src.onerror = () => setState("reconnecting…", "warn");
    src.addEventListener("signal", (e) => show(JSON.parse(e.data)));
    src.addEventListener("dropped", (e) => {
      list.prepend(text("li", "dropped", e.data + " signals were missed while this page fell behind."));
    });
    src.addEventListener("signed-out", () => {
      src.close();
      setState("signed out", "bad");
    });
  }

  for (const img of document.querySelectorAll("img[data-refresh]")) {
    const every = Number(img.dataset.refresh) * 1000;
    const base = img.src.split("#")[0];
    setInterval(() => { img.src = base + (base.includes("?") ? "&" : "?") + "t=" + Date.now(); }, every);
  }
})();
