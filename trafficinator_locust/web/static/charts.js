// Live per-target charts on the control page: polls ../api/charts every few seconds and swaps each
// target's SVG charts in (drawn on the server by core/charts.py, the same as the HTML report's), with
// its progress toward today's cap. Plain JS, no dependencies; names are put in the page as text.
"use strict";
(function () {
  const CHARTS_MS = 3000;
  const box = document.querySelector("#charts");
  const cards = new Map(); // target name -> its card element

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function card(name) {
    let found = cards.get(name);
    if (found) return found;
    found = element("div", "target-card");
    found.dataset.target = name;
    found.appendChild(element("h3", "", name));
    const cap = element("div", "cap");
    cap.appendChild(element("progress"));
    cap.appendChild(element("span", "cap-text"));
    found.appendChild(cap);
    found.appendChild(element("div", "charts"));
    box.appendChild(found);
    cards.set(name, found);
    return found;
  }

  // The server's SVG text as an SVG element of this page (parsed as XML, never as HTML; anything
  // active is dropped, although the renderer escapes every text and emits none).
  function svgNode(text) {
    const doc = new DOMParser().parseFromString(text, "image/svg+xml");
    const root = doc.documentElement;
    if (!root || root.nodeName !== "svg" || doc.getElementsByTagName("parsererror").length) return null;
    root.querySelectorAll("script, foreignObject, a").forEach((node) => node.remove());
    return document.importNode(root, true);
  }

  function showCap(node, target) {
    const bar = node.querySelector("progress");
    const text = node.querySelector(".cap-text");
    const granted = target.granted_today ?? target.visits_today ?? 0;
    if (target.cap_today === null || target.cap_today === undefined) {
      bar.hidden = true;
      text.textContent = `no daily cap \u00b7 ${target.visits_today ?? 0} visits started today \u00b7 ${target.state}`;
      return;
    }
    bar.hidden = false;
    bar.max = Math.max(target.cap_today, 1);
    bar.value = Math.min(granted, bar.max);
    const percent = target.cap_today ? 100 * granted / target.cap_today : 100;
    const share = percent.toFixed(percent < 1 ? 3 : 1);
    text.textContent = `${granted} of ${target.cap_today} today's cap (${share} %) \u00b7 ` +
      `${target.visits_today ?? 0} visits started today \u00b7 ${target.state}`;
  }

  function draw(target) {
    const node = card(target.name);
    node.dataset.samples = String(target.samples);
    node.dataset.state = target.state;
    showCap(node, target);
    const holder = node.querySelector(".charts");
    const wanted = new Set(target.charts.map((chart) => chart.key));
    for (const old of holder.querySelectorAll("figure")) if (!wanted.has(old.dataset.chart)) old.remove();
    for (const chart of target.charts) {
      let figure = holder.querySelector(`figure[data-chart="${CSS.escape(chart.key)}"]`);
      if (!figure) {
        figure = element("figure", "chart");
        figure.dataset.chart = chart.key;
        holder.appendChild(figure);
      }
      const svg = svgNode(chart.svg);
      if (svg) figure.replaceChildren(svg);
    }
  }

  async function refresh() {
    try {
      const response = await fetch("../api/charts", { credentials: "same-origin" });
      if (!response.ok) throw new Error(response.statusText);
      const body = await response.json();
      const names = new Set(body.targets.map((t) => t.name));
      for (const [name, node] of cards) if (!names.has(name)) { node.remove(); cards.delete(name); }
      body.targets.forEach(draw);
      box.dataset.updated = body.time;
      box.dataset.draws = String(Number(box.dataset.draws || 0) + 1);
    } catch (error) {
      box.dataset.error = String(error.message || error);
    }
  }

  refresh();
  setInterval(refresh, CHARTS_MS);
})();
