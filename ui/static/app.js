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

  function typeOf(v) {
    if (v === null) { return "null"; }
    if (Array.isArray(v)) { return "array"; }
    if (typeof v === "number" && Math.floor(v) === v) { return "integer"; }
    return typeof v;
  }

  // A first look at a value against a JSON Schema: the common keywords
  // only (type, required, properties, items, enum, lengths and bounds).
  // The server checks the whole schema when the task is created; this
  // only says sooner what it will refuse.
  function schemaErrors(schema, v, path, out) {
    if (!schema || typeof schema !== "object") { return out; }
    var t = typeOf(v);
    if (schema.type) {
      var types = Array.isArray(schema.type) ? schema.type : [schema.type];
      var ok = types.some(function (want) { return want === t || (want === "number" && t === "integer"); });
      if (!ok) { out.push(path + " must be " + types.join(" or ") + ", not " + t); return out; }
    }
    if (schema.enum && !schema.enum.some(function (e) { return JSON.stringify(e) === JSON.stringify(v); })) {
      out.push(path + " must be one of " + JSON.stringify(schema.enum));
    }
    if (t === "string") {
      if (schema.minLength !== undefined && v.length < schema.minLength) { out.push(path + " is shorter than " + schema.minLength); }
      if (schema.maxLength !== undefined && v.length > schema.maxLength) { out.push(path + " is longer than " + schema.maxLength); }
    }
    if (t === "number" || t === "integer") {
      if (schema.minimum !== undefined && v < schema.minimum) { out.push(path + " is less than " + schema.minimum); }
      if (schema.maximum !== undefined && v > schema.maximum) { out.push(path + " is more than " + schema.maximum); }
    }
    if (t === "object") {
      (schema.required || []).forEach(function (k) {
        if (!Object.prototype.hasOwnProperty.call(v, k)) { out.push(path + "." + k + " is required"); }
      });
      var props = schema.properties || {};
      Object.keys(props).forEach(function (k) {
        if (Object.prototype.hasOwnProperty.call(v, k)) { schemaErrors(props[k], v[k], path + "." + k, out); }
      });
    }
    if (t === "array" && schema.items && typeof schema.items === "object") {
      v.forEach(function (item, i) { schemaErrors(schema.items, item, path + "[" + i + "]", out); });
    }
    return out;
  }

  function jsonHints() {
    var areas = document.querySelectorAll("textarea[data-json]");
    for (var i = 0; i < areas.length; i++) {
      (function (ta) {
        var form = ta.form;
        var hint = form ? form.querySelector("[data-json-hint]") : null;
        var version = form ? form.querySelector("select[name=version]") : null;
        function schema() {
          var opt = version && version.options[version.selectedIndex];
          var raw = opt && opt.getAttribute("data-schema");
          if (!raw || raw === "null") { return null; }
          try { return JSON.parse(raw); } catch (e) { return null; }
        }
        function check() {
          var msgs = [];
          var v;
          try {
            v = JSON.parse(ta.value || "{}");
            if (v === null || typeof v !== "object" || Array.isArray(v)) { msgs.push("The context must be a JSON object."); }
          } catch (e) { msgs.push("Not valid JSON: " + e.message); }
          if (msgs.length === 0) { schemaErrors(schema(), v, "context", msgs); }
          ta.setAttribute("aria-invalid", msgs.length ? "true" : "false");
          if (hint) { hint.textContent = msgs.join("; "); }
        }
        ta.addEventListener("input", check);
        if (version) { version.addEventListener("change", check); }
        check();
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
