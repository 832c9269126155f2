// gitsync dashboard: live updates without a reload, and nothing else.
// The page works without this file; with it, the page asks the server for itself
// every few seconds with the ETag it has (the status and spec branches' commits);
// an unchanged branch answers 304, a changed one the new page, whose live
// regions replace this one's. Relative times ("5m ago") are kept current in between.
"use strict";

(function () {
  const body = document.body;
  let etag = body.dataset.etag || "";
  const seconds = Math.max(1, Number(body.dataset.poll) || 5);
  const note = document.getElementById("live-note");

  function ago(date) {
    let s = Math.max(0, Math.floor((Date.now() - date.getTime()) / 1000));
    for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60]]) {
      if (s >= size) return Math.floor(s / size) + unit;
    }
    return s + "s";
  }

  function refreshTimes(root) {
    for (const el of root.querySelectorAll("time[datetime]")) {
      const when = new Date(el.getAttribute("datetime"));
      if (!Number.isNaN(when.getTime())) el.textContent = ago(when) + " ago";
    }
  }

  function say(text) {
    if (note && note.textContent !== text) note.textContent = text;
  }

  async function poll() {
    if (!etag || document.hidden) return;
    let response;
    try {
      response = await fetch(window.location.href, {
        headers: { "If-None-Match": etag, "Accept": "text/html" },
        cache: "no-store",
        credentials: "same-origin",
      });
    } catch (err) {
      say("Live: the server cannot be reached; retrying");
      return;
    }
    // Nothing said on a 304: the note is a live region, read out on every change.
    if (response.status === 304) return;
    if (!response.ok) {
      say("Live: the server answered " + response.status + "; retrying");
      return;
    }
    const html = await response.text();
    const next = new DOMParser().parseFromString(html, "text/html");
    // Each region marked data-live is replaced by its namesake, so the filter form
    // (outside them) keeps what the reader is typing and where the focus is.
    for (const region of next.querySelectorAll("[data-live][id]")) {
      const here = document.getElementById(region.id);
      if (here) here.replaceWith(document.adoptNode(region));
    }
    etag = response.headers.get("ETag") || next.body.dataset.etag || "";
    document.title = next.title;
    refreshTimes(document);
    say("Live: updated at " + new Date().toLocaleTimeString());
  }

  // Picking a filter applies it at once; the form still works without this.
  for (const select of document.querySelectorAll("form.filters select")) {
    select.addEventListener("change", () => select.form.submit());
  }

  refreshTimes(document);
  window.setInterval(poll, seconds * 1000);
  window.setInterval(() => refreshTimes(document), 15000);
})();
