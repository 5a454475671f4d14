// The operator pages' live connection: the dashboard websocket, reconnecting with a growing delay, each
// event's JSON handed to the page's handler, and the state told in the page's status line. No libraries.
(function () {
  "use strict";

  var FORBIDDEN = 4403;
  var MAX_RETRY_DELAY = 30000;

  // root: the element with data-ws-path (and a [data-live-status] inside); onEvent(data) for each event;
  // liveText: the status line while connected.
  function connectLive(root, onEvent, liveText) {
    var statusNode = root.querySelector("[data-live-status]");
    var retryDelay = 1000;

    function setStatus(text) {
      if (statusNode) {
        statusNode.textContent = text;
      }
    }

    function connect() {
      var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
      var socket = new WebSocket(scheme + window.location.host + root.getAttribute("data-ws-path"));

      socket.addEventListener("open", function () {
        retryDelay = 1000;
        setStatus(liveText);
      });

      socket.addEventListener("message", function (message) {
        var data;
        try {
          data = JSON.parse(message.data);
        } catch (error) {
          return;
        }
        if (data) {
          onEvent(data);
        }
      });

      socket.addEventListener("close", function (closed) {
        if (closed.code === FORBIDDEN) {
          setStatus("Live updates refused: log in again as an operator.");
          return;
        }
        setStatus("Live updates lost; reconnecting…");
        window.setTimeout(connect, retryDelay);
        retryDelay = Math.min(retryDelay * 2, MAX_RETRY_DELAY);
      });
    }

    setStatus("Connecting to live updates…");
    connect();
    return setStatus;
  }

  window.CoinLinkLive = { connect: connectLive };
})();
