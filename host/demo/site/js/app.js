// Reports how the page's resources arrived, for the demo and the browser test:
// after load, a <pre id="resources"> holds JSON with the navigation timing
// (was a 103 received?) and every resource (was it served from an early hint?).
document.addEventListener("DOMContentLoaded", () => {
  const count = performance.getEntriesByType("resource").length;
  document.getElementById("status").textContent = "The script ran; " + count + " resources so far.";
});

// Synchronous on purpose: headless `--dump-dom` prints the DOM right after load.
window.addEventListener("load", () => {
  const nav = performance.getEntriesByType("navigation")[0] || {};
  const report = {
    navigation: {
      protocol: nav.nextHopProtocol,
      status: nav.responseStatus,
      firstInterimResponseStart: nav.firstInterimResponseStart || 0,
    },
    resources: performance.getEntriesByType("resource").map((e) => ({
      name: new URL(e.name).pathname,
      initiator: e.initiatorType,
      protocol: e.nextHopProtocol,
      transferSize: e.transferSize,
    })),
    fonts: Array.from(document.fonts).map((f) => f.family.replace(/"/g, "") + ":" + f.status),
  };
  const pre = document.createElement("pre");
  pre.id = "resources";
  pre.textContent = JSON.stringify(report);
  document.body.appendChild(pre);
});
