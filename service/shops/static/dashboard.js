// The shop dashboard (GET /dashboard): draws GET /v1/reports/conversions with Chart.js.
// It keeps a dashboard token (from the link's #token= part or the sign-in form) in this
// tab's sessionStorage, never the secret key. A file, not an inline script: the page's
// Content-Security-Policy allows scripts from this origin only.
(() => {
  "use strict";

  const TOKEN_KEY = "formwise-dashboard-token";
  const COLORS = { answers: "#8c959f", views: "#1f5f9f", clicks: "#0b6e4f", add_to_cart: "#c26b16",
                   orders: "#6b2fa3", revenue: "#6b2fa3" };
  const LABELS = { answers: "Answers", views: "Views", clicks: "Clicks", add_to_cart: "Add to cart",
                   orders: "Orders" };
  const charts = {};
  const $ = (id) => document.getElementById(id);

  function token() {
    const fromLink = new URLSearchParams(window.location.hash.slice(1)).get("token");
    if (fromLink) {
      sessionStorage.setItem(TOKEN_KEY, fromLink);
      history.replaceState(null, "", window.location.pathname);  // the token leaves the address bar
    }
    return sessionStorage.getItem(TOKEN_KEY);
  }

  function isoDay(date) { return date.toISOString().slice(0, 10); }

  async function report(group, format) {
    const query = new URLSearchParams({ group, from: $("from").value, to: $("to").value });
    if (format) query.set("format", format);
    const response = await fetch(`/v1/reports/conversions?${query}`, {
      headers: { "X-Dashboard-Token": token() }, credentials: "omit",
    });
    if (response.status === 401) { signOut("The session has ended: sign in again."); throw new Error("signed out"); }
    if (!response.ok) {
      const problem = await response.json().catch(() => ({}));
      throw new Error(problem.detail || `The report answered ${response.status}.`);
    }
    return format === "csv" ? response.blob() : response.json();
  }

  function money(revenue) {
    const entries = Object.entries(revenue || {});
    return entries.length ? entries.map(([currency, amount]) => new Intl.NumberFormat(undefined,
      { style: "currency", currency }).format(Number(amount))).join(" + ") : "–";
  }

  function percent(rate) { return rate === null || rate === undefined ? "–" : `${(rate * 100).toFixed(1)} %`; }

  function tile(term, value) {
    const box = document.createElement("div");
    const dt = document.createElement("dt");
    const dd = document.createElement("dd");
    dt.textContent = term;
    dd.textContent = value;
    box.append(dt, dd);
    return box;
  }

  function draw(id, type, labels, datasets, extra) {
    if (charts[id]) charts[id].destroy();
    charts[id] = new Chart($(id).getContext("2d"), {
      type, data: { labels, datasets },
      options: Object.assign({ responsive: true, maintainAspectRatio: false, animation: false,
        legend: { position: "bottom" }, scales: { yAxes: [{ ticks: { beginAtZero: true, precision: 0 } }] } },
      extra || {}),
    });
  }

  function series(rows, name, kind) {
    return { label: LABELS[name], data: rows.map((row) => row[name]), borderColor: COLORS[name],
             backgroundColor: kind === "line" ? "transparent" : COLORS[name], fill: false, lineTension: 0 };
  }

  // One row per day of the range, with zeros where nothing happened, so that the time axis
  // shows the whole range and quiet days are seen as quiet.
  function everyDay(rows) {
    const byDay = new Map(rows.map((row) => [row.day, row]));
    const filled = [];
    const last = new Date(`${$("to").value}T00:00:00Z`);
    for (let day = new Date(`${$("from").value}T00:00:00Z`); day <= last; day.setUTCDate(day.getUTCDate() + 1)) {
      const key = isoDay(day);
      filled.push(byDay.get(key) || { day: key, answers: 0, views: 0, clicks: 0, add_to_cart: 0, orders: 0,
                                       units: 0, revenue: {} });
    }
    return filled;
  }

  function render(byDay, byForm, byProduct) {
    $("shop-name").textContent = `· ${byDay.shop}`;
    const widget = byDay.widget;
    const totals = widget.totals;
    $("totals").replaceChildren(
      tile("Answers", widget.answers), tile("Views", totals.views), tile("Clicks", totals.clicks),
      tile("Add to cart", totals.add_to_cart), tile("Orders", totals.orders), tile("Revenue", money(totals.revenue)),
      tile("Click rate", percent(totals.click_rate)), tile("Conversion", percent(totals.conversion)));
    const unattributed = byDay.unattributed;
    $("elsewhere").textContent = `Not counted above: your own server's calls with the secret key ` +
      `(${byDay.server.answers} answers, ${byDay.server.totals.orders} orders) and events on products ` +
      `an answer did not show (${unattributed.views} views, ${unattributed.orders} orders).`;

    const days = everyDay(widget.rows);
    draw("chart-days", "line", days.map((row) => row.day),
      ["answers", "views", "clicks", "add_to_cart", "orders"].map((name) => series(days, name, "line")));
    const currency = Object.keys(totals.revenue)[0];
    draw("chart-revenue", "bar", days.map((row) => row.day), [{
      label: currency ? `Revenue (${currency})` : "Revenue", backgroundColor: COLORS.revenue,
      data: days.map((row) => Number((row.revenue || {})[currency] || 0)) }],
      { scales: { yAxes: [{ ticks: { beginAtZero: true } }] } });
    const forms = byForm.widget.rows;
    draw("chart-forms", "bar", forms.map((row) => row.form),
      ["views", "clicks", "orders"].map((name) => series(forms, name, "bar")));
    const products = byProduct.widget.rows;
    draw("chart-products", "horizontalBar", products.map((row) => row.sku),
      ["views", "clicks", "orders"].map((name) => series(products, name, "bar")),
      { scales: { xAxes: [{ ticks: { beginAtZero: true, precision: 0 } }] } });

    renderExperiment(byDay.experiment);
    $("product-table").tBodies[0].replaceChildren(...products.map((row) => {
      const line = document.createElement("tr");
      for (const value of [row.sku, row.name, row.form, row.views, row.clicks, row.add_to_cart, row.orders,
                           money(row.revenue), percent(row.conversion)]) {
        const cell = document.createElement("td");
        cell.textContent = value;  // a shop's own text, never markup
        line.append(cell);
      }
      return line;
    }));
  }

  function points(value) { return `${value >= 0 ? "+" : ""}${(value * 100).toFixed(1)}`; }

  function renderExperiment(trial) {
    $("experiment").hidden = !trial;
    if (!trial) return;
    const state = trial.running ? `running, ${Math.round(trial.control_share * 100)} % of visits in the control`
      : "stopped";
    $("experiment-state").textContent = `Experiment ${trial.experiment_id} (${state}), since ` +
      `${(trial.started_at || "").slice(0, 10)}. The control shows your default product for the visitor's goal ` +
      "instead of the ranking; when its form is not one recommended for that person, the ranking is shown " +
      "(a safety override).";
    const shows = { ranking: "the ranking", control: "your default product" };
    $("experiment-table").tBodies[0].replaceChildren(...["ranking", "control"].map((arm) => {
      const figures = trial.arms[arm];
      const line = document.createElement("tr");
      for (const value of [arm, shows[arm], figures.answers, figures.converted, percent(figures.conversion),
                           figures.safety_overrides]) {
        const cell = document.createElement("td");
        cell.textContent = value;
        line.append(cell);
      }
      return line;
    }));
    const difference = trial.difference;
    $("experiment-difference").textContent = difference
      ? `Ranking minus control: ${points(difference.ranking_minus_control)} percentage points ` +
        `(95 % confidence interval ${points(difference.ci95[0])} to ${points(difference.ci95[1])}).`
      : "The difference needs answers in both arms.";
  }

  async function load() {
    $("board-error").textContent = "";
    try {
      const [byDay, byForm, byProduct] = await Promise.all([report("day"), report("form"), report("product")]);
      render(byDay, byForm, byProduct);
      document.body.dataset.loaded = "true";
    } catch (error) {
      if (error.message !== "signed out") $("board-error").textContent = error.message;
    }
  }

  async function download(event) {
    event.preventDefault();
    const group = event.currentTarget.dataset.group;
    try {
      const blob = await report(group, "csv");
      const link = document.createElement("a");
      link.href = URL.createObjectURL(blob);
      link.download = `conversions-${group}-${$("from").value}-${$("to").value}.csv`;
      link.click();
      setTimeout(() => URL.revokeObjectURL(link.href), 10000);
    } catch (error) {
      if (error.message !== "signed out") $("board-error").textContent = error.message;
    }
  }

  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    $("board").hidden = true;
    $("sign-in").hidden = false;
    $("sign-in-error").textContent = message || "";
    $("secret-key").focus();
  }

  async function signIn(event) {
    event.preventDefault();
    const response = await fetch("/dashboard/session", {
      method: "POST", headers: { "Content-Type": "application/json" }, credentials: "omit",
      body: JSON.stringify({ secret_key: $("secret-key").value.trim() }),
    });
    $("secret-key").value = "";  // the key leaves the page as soon as it has been sent
    const body = await response.json().catch(() => ({}));
    if (!response.ok) { $("sign-in-error").textContent = body.detail || "The key was refused."; return; }
    sessionStorage.setItem(TOKEN_KEY, body.token);
    start();
  }

  function start() {
    if (!token()) { signOut(); return; }
    $("sign-in").hidden = true;
    $("board").hidden = false;
    load();
  }

  const today = new Date();
  $("to").value = isoDay(today);
  $("from").value = isoDay(new Date(today.getTime() - 29 * 24 * 3600 * 1000));
  $("range").addEventListener("submit", (event) => { event.preventDefault(); load(); });
  $("sign-in-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", () => signOut());
  for (const link of document.querySelectorAll(".downloads a")) link.addEventListener("click", download);
  start();
})();
