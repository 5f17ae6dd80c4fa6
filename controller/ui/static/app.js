// deployctl dashboard: times in the browser's zone, the filter box, the
// rollback confirmation and live updates over server-sent events. The
// pages work without it (server-rendered, a confirmation page instead of
// the dialog); no framework, no build step.
(function () {
  "use strict";
  var rtf = window.Intl && Intl.RelativeTimeFormat ? new Intl.RelativeTimeFormat(undefined, { numeric: "auto" }) : null;
  var dtf = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

  function relative(d) {
    var s = (d.getTime() - Date.now()) / 1000, a = Math.abs(s);
    if (!rtf) return "";
    if (a < 60) return rtf.format(Math.round(s), "second");
    if (a < 3600) return rtf.format(Math.round(s / 60), "minute");
    if (a < 86400) return rtf.format(Math.round(s / 3600), "hour");
    return rtf.format(Math.round(s / 86400), "day");
  }

  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (t) {
      var d = new Date(t.getAttribute("datetime"));
      if (isNaN(d)) return;
      if (!t.dataset.utc) t.dataset.utc = t.textContent;
      t.title = t.dataset.utc;
      t.textContent = dtf.format(d) + " (" + relative(d) + ")";
    });
  }

  function applyFilter() {
    var box = document.getElementById("filter");
    if (!box) return;
    var words = box.value.toLowerCase().split(/\s+/).filter(Boolean);
    document.querySelectorAll("#services-table tbody tr").forEach(function (tr) {
      var hay = (tr.dataset.filter || "").toLowerCase();
      tr.hidden = !words.every(function (w) { return hay.indexOf(w) >= 0; });
    });
  }

  function setupFilter() {
    var box = document.getElementById("filter");
    if (!box) return;
    box.addEventListener("input", function () {
      applyFilter();
      var u = new URL(location.href);
      if (box.value) u.searchParams.set("q", box.value); else u.searchParams.delete("q");
      history.replaceState(null, "", u);
    });
  }

  function setupRollback() {
    var dlg = document.getElementById("rollback-dialog");
    if (!dlg || !dlg.showModal) return;
    var form = dlg.querySelector("form");
    document.addEventListener("submit", function (e) {
      var f = e.target;
      if (!f.classList || !f.classList.contains("rollback")) return;
      e.preventDefault();
      var name = document.getElementById("svc-title");
      var svc = name ? name.firstChild.textContent.trim() : "";
      document.getElementById("rollback-text").textContent =
        "Roll back " + svc + " from revision " + f.dataset.from + " to revision " + f.dataset.to +
        " (digest " + f.dataset.digest + ")? The rollback is a new revision, rolled out health-gated.";
      form.elements.to.value = f.dataset.to;
      form.elements.csrf.value = f.elements.csrf.value;
      dlg.showModal();
      document.getElementById("rollback-cancel").focus();
    });
    document.getElementById("rollback-cancel").addEventListener("click", function () { dlg.close(); });
  }

  function setupLive() {
    var url = document.body.dataset.live;
    var status = document.getElementById("live-status");
    if (!url || !window.EventSource) return;
    var es = new EventSource(url);
    es.addEventListener("open", function () { status.textContent = "live"; status.className = "live-status on"; });
    es.addEventListener("error", function () { status.textContent = "reconnecting…"; status.className = "live-status off"; });
    es.addEventListener("problem", function (e) { status.textContent = "live: " + JSON.parse(e.data); status.className = "live-status off"; });
    es.addEventListener("update", function (e) {
      var parts = JSON.parse(e.data);
      Object.keys(parts).forEach(function (id) {
        var el = document.getElementById(id);
        if (el) el.innerHTML = parts[id];
        if (el) localTimes(el);
      });
      applyFilter();
      status.textContent = "live"; status.className = "live-status on";
      document.body.dataset.updates = String(Number(document.body.dataset.updates || "0") + 1);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    setupFilter();
    applyFilter();
    setupRollback();
    setupLive();
    setInterval(function () { localTimes(document); }, 30000);
  });
})();
