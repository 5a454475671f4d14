// The self-learning page: when a phase 4 agent finishes a run (an agent_run event over the dashboard
// websocket, live.js) or an alert fires, fetch the page's figures again from the server and swap them in. The charts are drawn on the
// server, so the page reads the same with or without this script.
(function () {
  "use strict";

  var root = document.querySelector("[data-fragment-url]");
  if (!root || !("WebSocket" in window) || !("fetch" in window) || !window.CoinLinkLive) {
    return;
  }
  var target = root.querySelector("[data-learning-figures]");
  var agents = (root.getAttribute("data-learning-agents") || "").split(" ");
  var REFRESH_DELAY = 500;
  var pending = null;
  var setStatus = function () {};

  function refresh() {
    pending = null;
    fetch(root.getAttribute("data-fragment-url"), { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        // The fragment is our own server's template output, escaped there like every page.
        target.innerHTML = html;
        setStatus("Live: updated " + new Date().toISOString().slice(11, 19) + " UTC.");
      })
      .catch(function () {
        setStatus("Live: the latest figures could not be loaded; they will be on the next update.");
      });
  }

  function scheduleRefresh() {
    // Several agents finish within moments of each other in a cycle: one fetch for all of them.
    if (pending === null) {
      pending = window.setTimeout(refresh, REFRESH_DELAY);
    }
  }

  setStatus = window.CoinLinkLive.connect(
    root,
    function (data) {
      var payload = data.payload;
      var learnt = data.event === "agent_run" && payload && payload.status === "succeeded" && agents.indexOf(payload.agent) !== -1;
      if (learnt || data.event === "alert") {
        scheduleRefresh();
      }
    },
    "Live: the figures update when a learning agent finishes or an alert fires."
  );
})();
