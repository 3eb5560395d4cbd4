// pd-relay's dashboard: refresh the parts marked data-refresh in place, every few
// seconds, while the tab is visible; never while a reader is in them (focus); confirm
// purges. Plain JavaScript, nothing to build, nothing from elsewhere.
"use strict";
(function () {
  const every = 1000 * Number(document.body.dataset.refreshS || 5);
  const parts = () => Array.from(document.querySelectorAll("[data-refresh][id]"));
  const stamp = document.getElementById("refreshed");
  const pause = document.getElementById("pause");
  let paused = false;

  document.addEventListener("submit", (e) => {
    const question = e.target.dataset.confirm;
    if (question && !window.confirm(question)) e.preventDefault();
  });
  if (!parts().length) return;
  pause.hidden = false;
  pause.addEventListener("click", () => {
    paused = !paused;
    pause.textContent = paused ? "Resume refreshing" : "Pause refreshing";
    pause.setAttribute("aria-pressed", String(paused));
  });

  async function refresh() {
    if (paused || document.hidden) return;
    let reply;
    try {
      reply = await fetch(location.href, { credentials: "same-origin", cache: "no-store" });
    } catch (err) {
      stamp.textContent = "Not refreshed: the relay did not answer";
      return;
    }
    if (!reply.ok && reply.status !== 400) {
      stamp.textContent = `Not refreshed: ${reply.status} ${reply.statusText}`;
      return;
    }
    const fresh = new DOMParser().parseFromString(await reply.text(), "text/html");
    for (const part of parts()) {
      const next = fresh.getElementById(part.id);
      if (next && !part.contains(document.activeElement)) part.innerHTML = next.innerHTML;
    }
    stamp.textContent = "Updated " + new Date().toLocaleTimeString();
  }
  setInterval(refresh, every);
})();
