// The interactive attention view of attention_book (attention_book.interpret.attention_view).
// Plain JavaScript, no library, no network. Python inlines this file after the view's data and
// calls the function below with the view's root <div>; nothing is added to the global scope.
// The UI's own words follow the page's language: <html lang="zh..."> gives Chinese, else English.
(function (root) {
  "use strict";
  if (!root || root.dataset.ready) { return; }
  root.dataset.ready = "1";
  var data = JSON.parse(root.querySelector("script.ab-attn-data").textContent);
  var holder = root.closest("[lang]") || document.documentElement;
  var zh = /^zh/i.test(holder.lang || "");
  var words = zh
    ? { layer: "层", head: "头", mean: "各头平均", query: "查询", keys: "键", weight: "权重" }
    : { layer: "Layer", head: "Head", mean: "mean of heads", query: "Query", keys: "Keys",
        weight: "weight" };
  var layers = data.weights.length, heads = data.weights[0].length;
  var L = data.tokens.length, S = data.keys.length;
  var state = { layer: 0, head: -1, query: 0 };  // head -1: the mean of the heads

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined) { node.textContent = text; }
    return node;
  }
  function picker(label, names, extra) {
    var wrap = el("label", "ab-attn-pick", label + " ");
    var select = el("select");
    names.forEach(function (name, i) { select.appendChild(new Option(name, String(i))); });
    if (extra) { select.appendChild(new Option(extra, "-1")); }
    wrap.appendChild(select);
    bar.appendChild(wrap);
    return select;
  }
  function row(label, texts, cls) {
    var line = el("div", "ab-attn-row");
    line.appendChild(el("span", "ab-attn-label", label));
    var cells = texts.map(function (text, i) {
      var cell = el("span", cls, text);
      cell.dataset.index = String(i);
      line.appendChild(cell);
      return cell;
    });
    root.appendChild(line);
    return cells;
  }
  // the weights of one query: one head, or the mean of the heads of the chosen layer
  function weightsOf(query) {
    var layer = data.weights[state.layer];
    if (state.head >= 0) { return layer[state.head][query]; }
    var mean = [];
    for (var j = 0; j < S; j++) {
      var total = 0;
      for (var h = 0; h < heads; h++) { total += layer[h][query][j]; }
      mean.push(Math.round(1000 * total / heads) / 1000);
    }
    return mean;
  }
  function show() {
    var shown = weightsOf(state.query);
    queries.forEach(function (cell, i) {
      var on = i === state.query;
      cell.classList.toggle("ab-attn-on", on);
      cell.setAttribute("aria-pressed", on ? "true" : "false");
      cell.tabIndex = on ? 0 : -1;
    });
    keys.forEach(function (cell, j) {
      var w = shown[j], shade = Math.min(1, w / data.scale);
      cell.style.backgroundColor = "rgba(var(--ab-attn-rgb), " + shade.toFixed(3) + ")";
      cell.classList.toggle("ab-attn-strong", shade > 0.55);
      cell.dataset.weight = w.toFixed(3);
      cell.title = data.keys[j] + ": " + words.weight + " " + w.toFixed(3);
      cell.querySelector(".ab-attn-w").textContent = w.toFixed(2).replace(/^0\./, ".");
    });
  }
  function choose(i, focus) {
    state.query = Math.max(0, Math.min(L - 1, i));
    show();
    if (focus) { queries[state.query].focus(); }
  }

  root.querySelector(".ab-attn-fallback").remove();
  var bar = el("div", "ab-attn-bar");
  root.appendChild(bar);
  var layerPick = picker(words.layer, data.layerNames);
  var headPick = picker(words.head, data.headNames, heads > 1 ? words.mean : undefined);
  layerPick.value = String(state.layer);
  state.head = heads > 1 ? -1 : 0;
  headPick.value = String(state.head);
  layerPick.onchange = function () { state.layer = Number(layerPick.value); show(); };
  headPick.onchange = function () { state.head = Number(headPick.value); show(); };
  if (layers < 2) { layerPick.parentNode.hidden = true; }
  var queries = row(words.query, data.tokens, "ab-attn-q");
  var keys = row(words.keys, data.keys, "ab-attn-k");
  keys.forEach(function (cell) { cell.appendChild(el("span", "ab-attn-w")); });
  queries.forEach(function (cell, i) {
    cell.setAttribute("role", "button");
    cell.addEventListener("mouseenter", function () { choose(i, false); });
    cell.addEventListener("focus", function () { choose(i, false); });
    cell.addEventListener("click", function () { choose(i, true); });
    cell.addEventListener("keydown", function (event) {
      var moves = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 };
      if (event.key in moves) { choose(i + moves[event.key], true); }
      else if (event.key === "Home") { choose(0, true); }
      else if (event.key === "End") { choose(L - 1, true); }
      else if (event.key === "Enter" || event.key === " ") { choose(i, true); }
      else { return; }
      event.preventDefault();
    });
  });
  show();
})
