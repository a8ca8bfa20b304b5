// Reports which resources arrived by push or preload, for the demo and the browser test.
document.addEventListener("DOMContentLoaded", () => {
  const entries = performance.getEntriesByType("resource").map((e) => ({
    name: new URL(e.name).pathname,
    initiator: e.initiatorType,
    transferSize: e.transferSize,
  }));
  const status = document.getElementById("status");
  status.textContent = "The script ran; " + entries.length + " resources loaded.";
  window.heraldResources = entries;
});
