// LeadPulse console: live updates of the Leads page from GET /stream (Server-Sent Events). No inline script anywhere:
// the page's Content-Security-Policy allows only this site's own script files. Without JavaScript every page still
// works; it just does not update by itself.
(function () {
  "use strict";

  var source = null; // the open EventSource, while a page that wants one is shown
  var streamUrl = null;
  var pending = null; // the timer of a refresh asked for
  var inFlight = false;
  var again = false;
  var REFRESH_DELAY_MS = 250; // news comes in bursts (an event, then its score, then its level): one refresh for all
  var REFRESH_GAP_MS = 1000; // and under a steady flood of events, one refresh a second at most
  var lastRefresh = 0;

  function liveRegion() {
    return document.querySelector("[data-live-stream]");
  }

  function setStatus(text, on) {
    var status = document.querySelector("[data-live-status]");
    if (!status) return;
    status.textContent = text;
    status.classList.toggle("on", !!on);
  }

  function scoresOnScreen() {
    var scores = {};
    document.querySelectorAll("#live tr[data-lead-id]").forEach(function (row) {
      scores[row.getAttribute("data-lead-id")] = row.getAttribute("data-score") + "|" + row.getAttribute("data-level");
    });
    return scores;
  }

  function refresh() {
    pending = null;
    if (!liveRegion() || !window.htmx) return;
    if (inFlight) {
      again = true;
      return;
    }
    inFlight = true;
    lastRefresh = Date.now();
    var before = scoresOnScreen();
    var focused = document.activeElement;
    var focusHref = focused && liveRegion().contains(focused) ? focused.getAttribute("href") : null;
    window.htmx
      .ajax("GET", window.location.pathname + window.location.search, {
        target: "#live",
        select: "#live",
        swap: "outerHTML",
      })
      .then(function () {
        document.querySelectorAll("#live tr[data-lead-id]").forEach(function (row) {
          var now = row.getAttribute("data-score") + "|" + row.getAttribute("data-level");
          if (before[row.getAttribute("data-lead-id")] !== now) row.classList.add("changed");
        });
        if (focusHref) {
          // keep a keyboard user where they were: the same link, in the new rows
          var same = Array.prototype.find.call(document.querySelectorAll("#live a[href]"), function (a) {
            return a.getAttribute("href") === focusHref;
          });
          if (same) same.focus();
        }
        setStatus("Live updates: on (updated " + new Date().toLocaleTimeString() + ")", true);
      })
      .finally(function () {
        inFlight = false;
        if (again) {
          again = false;
          schedule();
        }
      });
  }

  function schedule() {
    if (pending !== null) return;
    var wait = Math.max(REFRESH_DELAY_MS, lastRefresh + REFRESH_GAP_MS - Date.now());
    pending = window.setTimeout(refresh, wait);
  }

  function open(url) {
    close();
    streamUrl = url;
    source = new EventSource(url);
    source.addEventListener("ready", function () {
      setStatus("Live updates: on", true);
    });
    ["new_event", "score_update", "level_change"].forEach(function (kind) {
      source.addEventListener(kind, schedule);
    });
    source.onerror = function () {
      if (source && source.readyState === EventSource.CLOSED) {
        setStatus("Live updates are off: reload the page to resume them.", false);
      } else {
        setStatus("Live updates: reconnecting…", false);
      }
    };
  }

  function close() {
    if (source) source.close();
    source = null;
    streamUrl = null;
  }

  // Called on the first load and after every page htmx swaps in: the stream is open exactly while a page wants it.
  function sync() {
    var region = liveRegion();
    var wanted = region ? region.getAttribute("data-live-stream") : null;
    if (!wanted) {
      close();
    } else if (wanted !== streamUrl) {
      setStatus("Live updates: connecting…", false);
      open(wanted);
    } else if (source && source.readyState === EventSource.OPEN) {
      setStatus("Live updates: on", true);
    }
  }

  // Copy buttons beside a secret or a snippet shown once: offered only where the browser lets a page copy.
  function offerCopy() {
    if (!navigator.clipboard) return;
    document.querySelectorAll("button[data-copy][hidden]").forEach(function (button) {
      button.hidden = false;
    });
  }

  document.addEventListener("click", function (evt) {
    var button = evt.target.closest && evt.target.closest("button[data-copy]");
    if (!button) return;
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source) return;
    navigator.clipboard.writeText(source.textContent).then(function () {
      button.setAttribute("data-copied", "true");
      button.firstChild.textContent = "Copied";
      window.setTimeout(function () {
        button.firstChild.textContent = "Copy";
      }, 2000);
    });
  });

  function pageShown() {
    sync();
    offerCopy();
  }

  document.addEventListener("DOMContentLoaded", pageShown);
  document.addEventListener("htmx:afterSettle", function (evt) {
    // a swap of the whole page (navigation) changes what the page wants; a live refresh of #live does not
    if (!evt.detail || !evt.detail.target || evt.detail.target.id !== "live") pageShown();
  });
  window.addEventListener("pagehide", close);
})();
