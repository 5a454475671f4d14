// The operator dashboard's live lists: agent and pipeline runs arrive over the dashboard websocket (live.js)
// and go to the top of their list, replacing the row of the same run. No libraries; text only ever set as text.
(function () {
  "use strict";

  var root = document.querySelector("[data-ws-path]");
  if (!root || !("WebSocket" in window) || !window.CoinLinkLive) {
    return;
  }

  var STATUS_LABELS = {
    queued: "Queued",
    running: "Running",
    succeeded: "Succeeded",
    failed: "Failed",
    skipped: "Skipped",
    retrying: "Retrying",
    partial: "Partly failed",
    degraded: "Succeeded, degraded",
    cancelled: "Cancelled",
  };

  function clock(iso) {
    var date = iso ? new Date(iso) : null;
    return date && !isNaN(date.getTime()) ? date.toISOString().slice(11, 19) : "";
  }

  function element(tag, className, text) {
    var node = document.createElement(tag);
    if (className) {
      node.className = className;
    }
    if (text !== undefined && text !== null) {
      node.textContent = String(text);
    }
    return node;
  }

  function adminLink(event, id) {
    // The page gives the admin address of run 0; the run's own differs only in the id.
    var template = root.getAttribute(event === "agent_run" ? "data-agent-run-url" : "data-pipeline-run-url") || "";
    return template.replace(/\/0\/change\/$/, "/" + encodeURIComponent(id) + "/change/");
  }

  function capitalised(text) {
    text = String(text || "");
    return text.charAt(0).toUpperCase() + text.slice(1);
  }

  function runItem(event, payload) {
    var item = element("li", "run-list__item run-list__item--live");
    item.setAttribute("data-id", String(payload.id));
    var status = String(payload.status || "");
    // An agent run that succeeded without a source it needed is shown as degraded, like its pipeline run.
    if (status === "succeeded" && payload.degraded_reason) {
      status = "degraded";
    }
    item.appendChild(element("span", "badge run-status run-status--" + status, STATUS_LABELS[status] || status));
    item.appendChild(document.createTextNode(" "));

    var isAgentRun = event === "agent_run";
    var name = (isAgentRun ? payload.agent : payload.name) + " #" + payload.id;
    var link = element("a", "run-list__name", name);
    link.href = adminLink(event, payload.id);
    item.appendChild(link);
    item.appendChild(document.createTextNode(" "));

    var details = [capitalised(payload.trigger)];
    if (isAgentRun) {
      if (payload.attempt > 1) {
        details.push("attempt " + payload.attempt);
      }
      if (payload.pipeline_run) {
        details.push("pipeline #" + payload.pipeline_run);
      }
      if (payload.retry_in) {
        details.push("retrying in " + payload.retry_in + " s");
      }
    } else if (Array.isArray(payload.agents)) {
      details.push(payload.agents.length + " agents");
    }
    item.appendChild(element("span", "muted small", details.join(", ")));
    item.appendChild(document.createTextNode(" "));

    var time = element("time", "muted small", clock(payload.queued_at));
    if (payload.queued_at) {
      time.setAttribute("datetime", payload.queued_at);
    }
    item.appendChild(time);

    if (payload.error) {
      item.appendChild(element("p", "run-list__detail run-list__detail--error", String(payload.error).slice(0, 200)));
    } else if (payload.degraded_reason) {
      item.appendChild(element("p", "run-list__detail", "Degraded: " + String(payload.degraded_reason).slice(0, 200)));
    } else if (isAgentRun && payload.summary) {
      item.appendChild(element("p", "run-list__detail", String(payload.summary).slice(0, 200)));
    }
    return item;
  }

  function prepend(event, payload) {
    var list = root.querySelector('[data-live-list="' + event + '"]');
    if (!list || !payload || payload.id === undefined) {
      return;
    }
    var id = String(payload.id);
    Array.prototype.forEach.call(list.children, function (child) {
      if (child.getAttribute("data-id") === id || child.classList.contains("run-list__empty")) {
        list.removeChild(child);
      }
    });
    list.insertBefore(runItem(event, payload), list.firstChild);
    var max = parseInt(list.getAttribute("data-max-items"), 10) || 20;
    while (list.children.length > max) {
      list.removeChild(list.lastChild);
    }
  }

  window.CoinLinkLive.connect(
    root,
    function (data) {
      if (data.event === "agent_run" || data.event === "pipeline_run") {
        prepend(data.event, data.payload);
      } else if (data.event === "drafts_waiting" && data.payload) {
        // The digest of new drafts waiting for approval: the count is the one the server just read.
        var counter = root.querySelector("[data-drafts-waiting]");
        if (counter) {
          counter.textContent = String(Number(data.payload.waiting) || 0);
        }
      }
    },
    "Live: new runs appear as they happen."
  );
})();
