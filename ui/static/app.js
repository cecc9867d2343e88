// taskerd web UI: local times, live regions, small form helpers.
// First-party, no dependencies; loaded with defer (no inline scripts: the
// pages' Content-Security-Policy forbids them).
(function () {
  "use strict";

  var rtf = window.Intl && Intl.RelativeTimeFormat ? new Intl.RelativeTimeFormat(undefined, { numeric: "auto" }) : null;

  function relative(date) {
    var s = (date.getTime() - Date.now()) / 1000;
    var a = Math.abs(s);
    var unit = "second", n = s;
    if (a >= 86400) { unit = "day"; n = s / 86400; }
    else if (a >= 3600) { unit = "hour"; n = s / 3600; }
    else if (a >= 60) { unit = "minute"; n = s / 60; }
    n = Math.round(n);
    return rtf ? rtf.format(n, unit) : n + " " + unit + "s";
  }

  // <time datetime="RFC 3339"> shows the browser's zone and how long ago.
  function formatTimes(root) {
    var els = (root || document).querySelectorAll("time[datetime]");
    for (var i = 0; i < els.length; i++) {
      var el = els[i];
      var d = new Date(el.getAttribute("datetime"));
      if (isNaN(d.getTime())) { continue; }
      el.textContent = d.toLocaleString() + " (" + relative(d) + ")";
      el.title = el.getAttribute("datetime");
    }
  }

  function toLogin() {
    window.location.href = "/ui/login?next=" + encodeURIComponent(window.location.pathname + window.location.search);
  }

  // An element with data-live-src is replaced by that fragment every
  // data-live-every ms until the fragment carries data-done.
  function live(el) {
    var src = el.getAttribute("data-live-src");
    var every = parseInt(el.getAttribute("data-live-every"), 10) || 2000;
    var timer = null;
    function schedule() { timer = window.setTimeout(tick, every); }
    function tick() {
      if (document.hidden) { schedule(); return; }
      var active = document.activeElement;
      if (active && el.contains(active) && (active.tagName === "TEXTAREA" || active.tagName === "INPUT")) {
        schedule(); // do not pull the floor from under someone typing
        return;
      }
      fetch(src, { credentials: "same-origin", headers: { "X-Taskerd-Fragment": "1" } }).then(function (res) {
        if (res.status === 401) { toLogin(); return null; }
        if (res.status === 403 || res.status === 404) { return null; } // will not change by asking again
        if (!res.ok) { schedule(); return null; }
        return res.text();
      }).then(function (html) {
        if (html === null || html === undefined) { return; }
        var open = [];
        var ds = el.querySelectorAll("details");
        for (var i = 0; i < ds.length; i++) { open.push(ds[i].open); }
        el.innerHTML = html;
        ds = el.querySelectorAll("details");
        for (var j = 0; j < ds.length && j < open.length; j++) { ds[j].open = open[j]; }
        formatTimes(el);
        if (el.querySelector("[data-done]")) {
          el.removeAttribute("data-live-src");
          el.setAttribute("data-live-stopped", "true");
          return;
        }
        schedule();
      }).catch(function () { schedule(); });
    }
    if (el.children.length === 0) { tick(); } else { schedule(); }
  }

  document.addEventListener("submit", function (ev) {
    var btn = ev.submitter || ev.target.querySelector("button[data-confirm]");
    var msg = btn && btn.getAttribute("data-confirm");
    if (msg && !window.confirm(msg)) { ev.preventDefault(); }
  });

  function jsonHints() {
    var areas = document.querySelectorAll("textarea[data-json]");
    for (var i = 0; i < areas.length; i++) {
      (function (ta) {
        var hint = ta.parentNode.querySelector("[data-json-hint]");
        function check() {
          var msg = "";
          try {
            var v = JSON.parse(ta.value || "{}");
            if (v === null || typeof v !== "object" || Array.isArray(v)) { msg = "The context must be a JSON object."; }
          } catch (e) { msg = "Not valid JSON: " + e.message; }
          ta.setAttribute("aria-invalid", msg ? "true" : "false");
          if (hint) { hint.textContent = msg; }
        }
        ta.addEventListener("input", check);
      })(areas[i]);
    }
  }

  function init() {
    formatTimes(document);
    window.setInterval(function () { formatTimes(document); }, 30000);
    var tz = document.querySelectorAll("form[data-tz-form] input[name=tz]");
    for (var i = 0; i < tz.length; i++) { tz[i].value = String(-new Date().getTimezoneOffset()); }
    var lives = document.querySelectorAll("[data-live-src]");
    for (var j = 0; j < lives.length; j++) { live(lives[j]); }
    jsonHints();
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", init); } else { init(); }
})();
