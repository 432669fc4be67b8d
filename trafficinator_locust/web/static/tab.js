// Injected into Locust's main page by the trafficinator plugin: a link to its control page.
(function () {
  "use strict";
  var link = document.createElement("a");
  link.id = "trafficinator-control-link";
  link.href = "trafficinator/";
  link.textContent = "Trafficinator targets: add, edit, disable, validate, presets \u2192";
  link.style.cssText = "position:fixed;left:1rem;bottom:1rem;z-index:2000;padding:0.5rem 0.8rem;" +
    "background:#1976d2;color:#fff;border-radius:4px;font:14px system-ui,sans-serif;text-decoration:none;";
  document.body.appendChild(link);
})();
