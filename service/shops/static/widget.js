/*
 * formwise advisor: <formwise-advisor shop-key="pk_..." locale="en"></formwise-advisor>
 *
 * One script tag, no build step. Styles live in a shadow root; theme it from the page with
 * CSS custom properties on the element (see docs/shops.md, "Put the widget on your page"):
 *   formwise-advisor { --formwise-accent: #0b6e4f; --formwise-font-family: inherit; }
 * and style the product cards' parts with formwise-advisor::part(add-to-cart) { ... }.
 * Attributes: shop-key (the shop's publishable key), locale (en or de; changing it re-asks the
 * same question in the new language), mode ("compact": the goal first, the rest behind "More
 * details"), limit (1-20), api-base (defaults to the origin this script was loaded from).
 * Properties: element.renderProduct = (product, context) => Node draws the shop's own product
 * card. It fires a "formwise-recommendation" event ({recommendation_id, locale}) when an answer
 * arrives, and element.track("add_to_cart", sku) records a shop event for that answer.
 * Every event carries the visit's random session_id (kept in sessionStorage for the tab).
 * The texts and vocabulary below are written in by the server (GET /widget.js).
 */
(() => {
  "use strict";

  const TEXTS = /*FORMWISE_TEXTS*/{};
  const VOCABULARY = /*FORMWISE_VOCABULARY*/{};
  const SCRIPT_ORIGIN = document.currentScript && document.currentScript.src
    ? new URL(document.currentScript.src, document.baseURI).origin
    : window.location.origin;
  // How long a followed product or cart link waits for its event before the page leaves.
  const CLICK_EVENT_WAIT_MS = 1500;
  const SESSION_STORAGE_KEY = "formwise-session";
  const SESSION_PATTERN = /^[A-Za-z0-9_-]{8,64}$/;
  const LINK_EVENTS = ["click", "add_to_cart"];
  const SEVERITY_ORDER = { critical: 0, warning: 1, info: 2 };

  const STYLE = `
    :host {
      display: block;
      font-family: var(--formwise-font-family, system-ui, sans-serif);
      font-size: var(--formwise-font-size, 1rem);
      line-height: 1.5;
      color: var(--formwise-text-color, #1f2328);
      background: var(--formwise-background, #ffffff);
      border: 1px solid var(--formwise-border-color, #c9ced6);
      border-radius: var(--formwise-radius, 8px);
      padding: var(--formwise-spacing, 1rem);
      max-width: var(--formwise-max-width, 46rem);
    }
    :host([hidden]) { display: none; }
    * { box-sizing: border-box; }
    h2 { font-size: 1.35em; line-height: 1.25; margin: 0 0 .25em; }
    h3 { font-size: 1.2em; margin: 1em 0 .5em; }
    h4 { font-size: 1.05em; margin: 0 0 .25em; }
    h5 { font-size: 1em; margin: .75em 0 .25em; }
    p { margin: .25em 0 .75em; }
    .field { margin: 0 0 .9em; }
    .field > label { display: block; font-weight: 600; margin-bottom: .2em; }
    input[type=number], select, textarea {
      font: inherit; color: inherit; background: var(--formwise-input-background, #ffffff);
      border: 1px solid var(--formwise-border-color, #c9ced6); border-radius: calc(var(--formwise-radius, 8px) / 2);
      padding: .4em .5em; width: 100%; max-width: 24rem;
    }
    textarea { max-width: 100%; }
    input[type=number] { max-width: 9rem; }
    .check { display: flex; gap: .5em; align-items: flex-start; margin: .2em 0; }
    .check.last { margin-bottom: .9em; }
    .check input { margin-top: .35em; width: 1.05em; height: 1.05em; flex: none;
                   accent-color: var(--formwise-accent, #0b6e4f); }
    fieldset { border: 1px solid var(--formwise-border-color, #c9ced6); border-radius: calc(var(--formwise-radius, 8px) / 2);
               margin: 0 0 .9em; padding: .5em .9em .7em; }
    legend { font-weight: 600; padding: 0 .3em; }
    .choices { display: grid; grid-template-columns: repeat(auto-fill, minmax(14rem, 1fr)); column-gap: 1em; }
    .hint { font-size: .9em; color: var(--formwise-muted-color, #57606a); margin: .2em 0 0; }
    .error { color: var(--formwise-critical, #b00020); font-weight: 600; margin: .3em 0 0; }
    [aria-invalid=true] { border-color: var(--formwise-critical, #b00020); }
    button {
      font: inherit; font-weight: 600; cursor: pointer; border: 0;
      background: var(--formwise-accent, #0b6e4f); color: var(--formwise-accent-text, #ffffff);
      border-radius: calc(var(--formwise-radius, 8px) / 2); padding: .6em 1.2em;
    }
    button[disabled] { opacity: .65; cursor: progress; }
    :focus-visible { outline: 3px solid var(--formwise-focus-ring, #1a73e8); outline-offset: 2px; }
    a { color: var(--formwise-link-color, var(--formwise-accent, #0b6e4f)); }
    .status { min-height: 1.5em; margin: .5em 0 0; }
    /* Compact mode: short questions first, the rest one click away, in as little height as
       a phone allows (at most 600 px before the results, measured at 375 and 1280 px wide). */
    .compact .intro { font-size: .9em; color: var(--formwise-muted-color, #57606a); margin-bottom: .5em; }
    .compact fieldset.goals { border: 0; padding: 0; margin-bottom: .6em; }
    .compact fieldset.goals > legend { padding: 0; margin-bottom: .2em; }
    .compact .choices { grid-template-columns: repeat(auto-fill, minmax(11rem, 1fr)); }
    .compact .goals .check { margin: 0; line-height: 1.4; }
    .compact .goals .check input { margin-top: .25em; }
    .compact .age-row { display: flex; flex-wrap: wrap; align-items: center; column-gap: .75em; }
    .compact .age-row > label { margin: 0; }
    .compact .age-row > .error { flex-basis: 100%; }
    .compact .status:empty { min-height: 0; margin: 0; }
    .more { border-top: 1px solid var(--formwise-border-color, #c9ced6); border-bottom: 1px solid var(--formwise-border-color, #c9ced6);
            padding: .4em 0; margin: 0 0 .9em; }
    .more[open] > summary { margin-bottom: .6em; }
    .more > summary { font-weight: 600; }
    .more > summary .topics { font-weight: 400; font-size: .9em; color: var(--formwise-muted-color, #57606a); }
    /* After an answer the page scrolls here; a shop with a sticky header sets the margin. */
    #results-heading, .caveat { scroll-margin-top: var(--formwise-scroll-margin, .5rem); }
    .caveat { border-left: 4px solid var(--formwise-border-color, #c9ced6); padding: .5em .75em; margin: 0 0 .5em;
              border-radius: 0 calc(var(--formwise-radius, 8px) / 2) calc(var(--formwise-radius, 8px) / 2) 0; }
    .caveat.critical { border-color: var(--formwise-critical, #b00020); background: var(--formwise-critical-background, #fdecee);
                       font-size: 1.05em; }
    .caveat.warning { border-color: var(--formwise-warning, #8a5300); background: var(--formwise-warning-background, #fff4e0); }
    .caveat.info { border-color: var(--formwise-info, #1a5fb4); background: var(--formwise-info-background, #eef4fb); }
    .caveat strong { margin-right: .35em; }
    .interactions ul { list-style: none; padding-left: 0; }
    .interactions li { margin: 0 0 .5em; }
    ol.forms { padding-left: 0; list-style: none; margin: 0; }
    ol.forms > li { border: 1px solid var(--formwise-border-color, #c9ced6); border-radius: var(--formwise-radius, 8px);
                    padding: .75em 1em; margin: 0 0 .75em; }
    .rank { font-weight: 400; color: var(--formwise-muted-color, #57606a); margin-right: .4em; }
    .badge { display: inline-block; white-space: nowrap; font-size: .8em; font-weight: 600; padding: .05em .5em; margin-left: .5em;
             border-radius: 999px; background: var(--formwise-info-background, #eef4fb); }
    .badge.caution { background: var(--formwise-warning-background, #fff4e0); color: var(--formwise-warning, #8a5300); }
    ul { margin: .25em 0 .5em; padding-left: 1.25em; }
    ul.reasons { list-style: none; padding-left: .25em; }
    .effect { font-weight: 700; display: inline-block; width: 1.1em; }
    .products > ul { list-style: none; padding-left: 0; margin: .25em 0 0; }
    li.product { margin: 0; padding: .6em 0; border-top: 1px solid var(--formwise-border-color, #c9ced6); }
    .card { display: flex; gap: .75em; align-items: flex-start; }
    .product-image { flex: none; display: block; line-height: 0; }
    .product-image img { width: 4.5rem; height: 4.5rem; object-fit: contain; background: #ffffff;
                         border: 1px solid var(--formwise-border-color, #c9ced6); border-radius: calc(var(--formwise-radius, 8px) / 2); }
    .product-body { flex: 1; min-width: 0; overflow-wrap: anywhere; }
    .product-name { font-weight: 600; }
    .per-day { font-size: 1.1em; font-weight: 700; margin: .1em 0 0; }
    .product-facts { font-size: .92em; color: var(--formwise-muted-color, #57606a); margin: 0 0 .3em; }
    .add-to-cart { display: inline-block; font-weight: 600; text-decoration: none; padding: .4em 1em;
                   background: var(--formwise-accent, #0b6e4f); color: var(--formwise-accent-text, #ffffff);
                   border-radius: calc(var(--formwise-radius, 8px) / 2); }
    .add-to-cart:hover { text-decoration: underline; }
    .disclaimer { border-top: 1px solid var(--formwise-border-color, #c9ced6); margin-top: 1em; padding-top: .75em; }
    details { margin: .75em 0; }
    summary { cursor: pointer; font-weight: 600; }
    .visually-hidden { position: absolute; width: 1px; height: 1px; margin: -1px; overflow: hidden;
                       clip: rect(0 0 0 0); white-space: nowrap; border: 0; }
  `;

  function resolveLocale(value) {
    const primary = String(value || "").replace("_", "-").split("-")[0].toLowerCase();
    return VOCABULARY.locales.includes(primary) ? primary : VOCABULARY.default_locale;
  }

  // h("p", {class: "x"}, "text", child): builds elements without innerHTML, so no text from
  // the API or the page can become markup.
  function h(tag, attributes, ...children) {
    const element = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (value === false || value === null || value === undefined) continue;
      if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
      else element.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      element.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return element;
  }

  // Only http(s) links and pictures: a "javascript:" or "data:" URL from a catalog (or from
  // anything that tampered with an answer) is dropped, never put in an href or src.
  function safeUrl(value) {
    if (typeof value !== "string" || value === "") return null;
    try {
      const url = new URL(value, document.baseURI);
      return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
    } catch (error) {
      return null;
    }
  }

  function randomToken() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
  }

  // One random token per visit (per tab, surviving reloads), so the server counts a visitor's
  // view or click of a product once. It says nothing about the person and never leaves this
  // shop's origin except with the widget's events.
  let visitFallback = null;
  function visitToken() {
    try {
      const stored = window.sessionStorage.getItem(SESSION_STORAGE_KEY);
      if (stored && SESSION_PATTERN.test(stored)) return stored;
    } catch (error) { /* storage blocked (sandboxed frame, privacy mode): keep it for this page */ }
    visitFallback = visitFallback || randomToken();
    try { window.sessionStorage.setItem(SESSION_STORAGE_KEY, visitFallback); } catch (error) { /* as above */ }
    return visitFallback;
  }

  class FormwiseAdvisor extends HTMLElement {
    static get observedAttributes() { return ["locale", "mode"]; }

    constructor() {
      super();
      this.attachShadow({ mode: "open" });
      this.answer = null; // the answer shown
      this.profile = null; // the profile it answers, to ask again in another language
      this.pending = null; // the profile of the question in flight
      this.question = 0; // numbers the questions: only the latest one's answer is shown
      this.viewsSent = Promise.resolve();
      this.productOf = new WeakMap(); // product card -> its product, for the events its links send
      // Do not assign this.renderProduct here: a shop may set it before this script upgrades
      // the element, and that own property must survive.
    }

    connectedCallback() { if (!this.shadowRoot.childNodes.length) this.render(); }

    attributeChangedCallback(name, oldValue, newValue) {
      if (oldValue === newValue || !this.shadowRoot.childNodes.length) return;
      const answeredIn = this.answerLocale;
      this.rerender();
      // The answer's texts come from the server in one language: ask again in the new one,
      // leaving the answer on screen until the translated one replaces it.
      const profile = this.pending || this.profile;
      if (name === "locale" && profile && (this.pending || answeredIn !== this.locale)) {
        this.ask(profile, { move: false, statusKey: "widget.relocalizing" });
      }
    }

    get locale() { return resolveLocale(this.getAttribute("locale") || document.documentElement.lang); }

    get mode() { return this.getAttribute("mode") === "compact" ? "compact" : "full"; }

    get apiBase() { return (this.getAttribute("api-base") || SCRIPT_ORIGIN).replace(/\/+$/, ""); }

    get shopKey() { return (this.getAttribute("shop-key") || "").trim(); }

    t(key, values) {
      const text = (TEXTS[this.locale] && TEXTS[this.locale][key]) || TEXTS[VOCABULARY.default_locale][key] || key;
      return text.replace(/\{(\w+)\}/g, (match, name) => (values && name in values ? values[name] : match));
    }

    $(id) { return this.shadowRoot.getElementById(id); }

    // The questionnaire's fields, each built once per render.
    fields() {
      const t = (key, values) => this.t(key, values);
      const choice = (group, word) => h("div", { class: "check" },
        h("input", { type: "checkbox", id: `${group}-${word}`, name: group, value: word }),
        h("label", { for: `${group}-${word}` }, t(`widget.${group === "conditions" ? "condition" : "goal"}.${word}`)));
      return {
        age: h("div", { class: "field age-row" },
          h("label", { for: "age" }, t("widget.age")),
          h("input", { id: "age", name: "age", type: "number", inputmode: "numeric", min: 0, max: 120, step: 1,
                       required: true, "aria-required": "true", "aria-describedby": "age-error" }),
          h("p", { id: "age-error", class: "error", hidden: true })),
        sex: h("div", { class: "field" },
          h("label", { for: "sex" }, t("widget.sex")),
          h("select", { id: "sex", name: "sex" },
            VOCABULARY.sexes.map((word) => h("option", { value: word }, t(`widget.sex.${word}`))))),
        pregnancy: [
          h("div", { class: "check" },
            h("input", { type: "checkbox", id: "pregnant", name: "pregnant" }),
            h("label", { for: "pregnant" }, t("widget.pregnant"))),
          h("div", { class: "check last" },
            h("input", { type: "checkbox", id: "breastfeeding", name: "breastfeeding" }),
            h("label", { for: "breastfeeding" }, t("widget.breastfeeding"))),
        ],
        kidney: h("div", { class: "field" },
          h("label", { for: "kidney" }, t("widget.kidney")),
          h("select", { id: "kidney", name: "kidney" },
            ["none", "yes", "dialysis"].map((value) => h("option", { value }, t(`widget.kidney.${value}`))))),
        egfr: h("div", { class: "field" },
          h("label", { for: "egfr" }, t("widget.egfr")),
          h("input", { id: "egfr", name: "egfr", type: "number", inputmode: "decimal", min: 0, max: 250, step: "any",
                       "aria-describedby": "egfr-hint egfr-error" }),
          h("p", { id: "egfr-hint", class: "hint" }, t("widget.egfr.hint")),
          h("p", { id: "egfr-error", class: "error", hidden: true })),
        conditions: h("fieldset", { class: "conditions" },
          h("legend", { id: "conditions-legend" }, t("widget.conditions")),
          h("div", { class: "choices" }, VOCABULARY.conditions.map((word) => choice("conditions", word)))),
        goals: h("fieldset", { class: "goals" },
          h("legend", { id: "goals-legend" }, t("widget.goals")),
          h("div", { class: "choices" }, VOCABULARY.goals.map((word) => choice("goals", word)))),
        medications: h("div", { class: "field" },
          h("label", { for: "medications" }, t("widget.medications")),
          h("textarea", { id: "medications", name: "medications", rows: 3, autocomplete: "off" })),
      };
    }

    render() {
      const t = (key, values) => this.t(key, values);
      const f = this.fields();
      const compact = this.mode === "compact";
      // Compact: the goal and the one required answer first; everything that can make the
      // advice safer stays one click away, and the summary says when it matters.
      const questions = compact
        ? [f.goals, f.age,
          h("details", { id: "more", class: "more" },
            h("summary", {}, t("widget.more_details"), " ",
              h("span", { class: "topics" }, t("widget.more_details.topics"))),
            f.sex, f.pregnancy, f.kidney, f.egfr, f.conditions, f.medications)]
        : [f.age, f.sex, f.pregnancy, f.kidney, f.egfr, f.conditions, f.goals, f.medications];
      const form = h("form", { novalidate: true, onsubmit: (event) => { event.preventDefault(); this.submit(); } },
        h("h2", { id: "title" }, t("widget.title")),
        h("p", { class: "intro" }, t(compact ? "widget.intro.compact" : "widget.intro")),
        compact ? null : h("p", { class: "hint" }, t("widget.required_note")),
        questions,
        h("button", { type: "submit", id: "submit" }, t("widget.submit")),
        h("p", { id: "status", class: "status", role: "status", "aria-live": "polite" }));
      // The results section outlives a re-render (a new locale or mode): the answer stays.
      const results = this.$("results") || h("section", {
        id: "results", "aria-labelledby": "results-heading", hidden: true,
        onclick: (event) => this.onResultsClick(event),
      });
      const wrapper = h("div", { lang: this.locale, part: "container", class: compact ? "compact" : "full" },
        h("style", {}, STYLE), form, results);
      this.shadowRoot.replaceChildren(wrapper);
    }

    // Re-render the questions (new locale or mode) keeping what the visitor typed and where
    // the keyboard focus was.
    rerender() {
      const values = [...this.shadowRoot.querySelectorAll("form input, form select, form textarea")]
        .map((field) => [field.id, field.type === "checkbox" ? field.checked : field.value]);
      const more = this.$("more");
      const wasOpen = more ? more.open : false;
      const focused = this.shadowRoot.activeElement;
      this.render();
      for (const [id, value] of values) {
        const field = this.$(id);
        if (!field) continue;
        if (field.type === "checkbox") field.checked = value;
        else field.value = value;
      }
      if (this.$("more") && wasOpen) this.$("more").open = true;
      // The answer's elements moved with it; a question's field was rebuilt under the same id.
      const refocus = focused && (focused.isConnected ? focused : focused.id && this.$(focused.id));
      if (refocus) refocus.focus({ preventScroll: true });
      if (this.pending) this.$("submit").disabled = true;
    }

    showFieldError(id, message) {
      const input = this.$(id);
      const error = this.$(`${id}-error`);
      input.setAttribute("aria-invalid", message ? "true" : "false");
      error.textContent = message || "";
      error.hidden = !message;
    }

    readProfile() {
      const ageText = this.$("age").value.trim();
      const age = Number(ageText);
      const egfrText = this.$("egfr").value.trim();
      const egfr = egfrText === "" ? null : Number(egfrText);
      const kidney = this.$("kidney").value;
      let firstInvalid = null;
      const ageValid = ageText !== "" && Number.isInteger(age) && age >= 0 && age <= 120;
      this.showFieldError("age", ageValid ? "" : this.t("widget.error.age"));
      if (!ageValid) firstInvalid = "age";
      let egfrMessage = "";
      if (egfr !== null && !(Number.isFinite(egfr) && egfr >= 0 && egfr <= 250)) egfrMessage = this.t("widget.error.egfr");
      // With kidney disease an unknown eGFR would hide the risk: ask for it rather than guess.
      else if (kidney === "yes" && egfr === null) egfrMessage = this.t("widget.egfr.needed");
      this.showFieldError("egfr", egfrMessage);
      if (egfrMessage && !firstInvalid) firstInvalid = "egfr";
      if (firstInvalid) return { invalid: firstInvalid };
      const checked = (group) => [...this.shadowRoot.querySelectorAll(`input[name=${group}]:checked`)].map((box) => box.value);
      const medications = this.$("medications").value.split(/[\n,;]+/).map((name) => name.trim()).filter(Boolean);
      return {
        profile: {
          age, sex: this.$("sex").value, pregnant: this.$("pregnant").checked,
          breastfeeding: this.$("breastfeeding").checked, egfr, dialysis: kidney === "dialysis",
          conditions: checked("conditions"), goals: checked("goals"), medications,
        },
      };
    }

    headers() {
      const headers = { "Content-Type": "application/json" };
      if (this.shopKey) {
        headers["X-API-Key"] = this.shopKey;
        // the same visit token as the events: a shop's A/B experiment splits by visit
        headers["X-Formwise-Session"] = visitToken();
      }
      return headers;
    }

    submit() {
      const read = this.readProfile();
      if (read.invalid) {
        this.$("status").textContent = this.t("widget.error.check");
        const field = this.$(read.invalid);
        const more = field.closest("details");
        if (more) more.open = true; // compact mode: the field may be folded away
        field.focus();
        return;
      }
      this.ask(read.profile, { move: true, statusKey: "widget.loading" });
    }

    // Asks for an answer to `profile` in the current locale and shows it. `move`: bring the
    // answer into view and move the focus to it (after a submit, not after a locale change).
    async ask(profile, { move, statusKey }) {
      const question = ++this.question;
      const locale = this.locale;
      this.pending = profile;
      this.$("submit").disabled = true;
      this.$("results").setAttribute("aria-busy", "true");
      this.$("status").textContent = this.t(statusKey);
      const limit = Math.min(20, Math.max(1, parseInt(this.getAttribute("limit") || "3", 10) || 3));
      let message = null;
      try {
        const response = await fetch(`${this.apiBase}/v1/recommendations`, {
          method: "POST", mode: "cors", credentials: "omit", headers: this.headers(),
          body: JSON.stringify({ profile, options: { limit, locale } }),
        });
        const body = await response.json().catch(() => null);
        if (question !== this.question) return; // a newer question (or language) replaced this one
        if (!response.ok) {
          console.warn("formwise:", response.status, body && (body.detail || body.title));
          message = response.status === 429 ? "widget.error.rate_limited" : "widget.error.failed";
          return;
        }
        this.answer = body;
        this.answerLocale = locale;
        this.profile = profile;
        this.showAnswer(body, { move });
        message = "widget.results_ready";
        this.dispatchEvent(new CustomEvent("formwise-recommendation", {
          bubbles: true, composed: true, detail: { recommendation_id: body.recommendation_id, locale },
        }));
        this.reportViews(body);
      } catch (error) {
        console.warn("formwise:", error);
        message = "widget.error.failed";
      } finally {
        if (question === this.question) {
          this.pending = null;
          this.$("submit").disabled = false;
          this.$("results").removeAttribute("aria-busy");
          // On failure an answer already shown stays, in its language: nothing is lost.
          if (message) this.$("status").textContent = this.t(message);
        }
      }
    }

    caveatBlock(caveat) {
      return h("div", { class: `caveat ${caveat.severity}`, "data-code": caveat.code,
                        role: caveat.severity === "critical" ? "alert" : null },
        h("strong", {}, `${this.t(`widget.severity.${caveat.severity}`)}:`), caveat.text);
    }

    money(amount, currency) {
      try {
        return new Intl.NumberFormat(this.locale, { style: "currency", currency }).format(amount);
      } catch (error) { // a currency code this browser does not know
        return `${Number(amount).toFixed(2)} ${currency}`;
      }
    }

    // The widget's own product card. Every link in it that records an event says which one
    // in data-formwise-event; onResultsClick sends it before the link is followed.
    productCard(product) {
      const url = safeUrl(product.url);
      const image = safeUrl(product.image_url);
      const cart = safeUrl(product.cart_url);
      const facts = [
        this.t("widget.product.price", { price: this.money(product.price, product.currency) }),
        this.t("widget.product.units", { units: product.units_per_day, mg: product.elemental_mg_per_day }),
        this.t("widget.product.pack", { days: product.days_per_pack }),
      ].join(" · ");
      const picture = image ? h("img", { src: image, alt: "", loading: "lazy", decoding: "async", width: 72, height: 72,
                                         part: "product-image", onerror: (event) => event.target.remove() }) : null;
      return h("div", { class: "card", part: "product" },
        // The picture repeats the name's link: hidden from the keyboard and screen readers.
        picture ? (url ? h("a", { class: "product-image", href: url, tabindex: -1, "aria-hidden": "true",
                                  "data-formwise-event": "click" }, picture)
                       : h("span", { class: "product-image" }, picture)) : null,
        h("div", { class: "product-body" },
          url ? h("a", { class: "product-name", href: url, part: "product-name", "data-formwise-event": "click" },
            product.name) : h("span", { class: "product-name", part: "product-name" }, product.name),
          h("p", { class: "per-day", part: "price-per-day" },
            this.t("widget.product.cost", { cost: this.money(product.cost_per_day, product.currency) })),
          h("p", { class: "product-facts" }, facts),
          cart ? h("a", { class: "add-to-cart", href: cart, part: "add-to-cart", "data-formwise-event": "add_to_cart",
                          "aria-label": this.t("widget.product.add_to_cart_label", { name: product.name }) },
            this.t("widget.product.add_to_cart")) : null));
    }

    // A shop's own card from element.renderProduct, or the widget's when there is none (or
    // it fails or returns no Node).
    productItem(product, item) {
      const defaultCard = () => this.productCard(product);
      let card = null;
      if (typeof this.renderProduct === "function") {
        try {
          card = this.renderProduct(product, {
            locale: this.locale, recommendationId: this.answer && this.answer.recommendation_id,
            form: { form: item.form, name: item.name, rank: item.rank, status: item.status },
            pricePerDay: this.money(product.cost_per_day, product.currency),
            price: this.money(product.price, product.currency),
            imageUrl: safeUrl(product.image_url), url: safeUrl(product.url), cartUrl: safeUrl(product.cart_url),
            t: (key, values) => this.t(key, values), money: (amount) => this.money(amount, product.currency),
            defaultCard, track: (type) => this.track(type, product.sku),
          });
        } catch (error) {
          console.warn("formwise: renderProduct failed, showing the default card:", error);
        }
      }
      const listItem = h("li", { class: "product", "data-sku": product.sku },
        card instanceof Node ? card : defaultCard());
      this.productOf.set(listItem, product);
      return listItem;
    }

    recommendationItem(item) {
      const dose = item.dose.elemental_mg_per_day;
      const status = item.status === "caution" ? "caution" : "suitable";
      return h("li", { class: "form", "data-form": item.form },
        h("h4", {}, h("span", { class: "rank" }, this.t("widget.rank", { rank: item.rank })), item.name,
          h("span", { class: `badge ${status}` }, this.t(`widget.status.${status}`))),
        h("p", { class: "dose" }, this.t("widget.dose", { min: dose.min, max: dose.max })),
        item.reasons.length ? [
          h("h5", {}, this.t("widget.reasons")),
          h("ul", { class: "reasons" }, item.reasons.map((reason) => h("li", {},
            h("span", { class: "effect", "aria-hidden": "true" }, reason.effect === "+" ? "+" : "−"),
            h("span", { class: "visually-hidden" },
              `${this.t(reason.effect === "+" ? "widget.reason.plus" : "widget.reason.minus")}: `),
            reason.text))),
        ] : null,
        item.caveats.length ? [
          h("h5", {}, this.t("widget.form_caveats")),
          item.caveats.map((caveat) => this.caveatBlock(caveat)),
        ] : null,
        Array.isArray(item.products) ? h("div", { class: "products" },
          h("h5", {}, this.t("widget.products")),
          item.products.length
            ? h("ul", {}, item.products.map((product) => this.productItem(product, item)))
            : h("p", {}, this.t("widget.product.none"))) : null);
    }

    // Order: what must be read first (caveats, most severe first; then the medicines' timing
    // and interactions), then the forms with the shop's products, then the rest.
    showAnswer(answer, { move }) {
      const results = this.$("results");
      const heading = h("h3", { id: "results-heading", tabindex: "-1" }, this.t("widget.results"));
      const caveats = answer.caveats.filter((caveat) => caveat.code !== "consult_clinician")
        .sort((a, b) => (SEVERITY_ORDER[a.severity] ?? 3) - (SEVERITY_ORDER[b.severity] ?? 3));
      const clinician = answer.caveats.find((caveat) => caveat.code === "consult_clinician");
      const lead = caveats.length ? this.caveatBlock(caveats[0]) : null;
      if (lead && caveats[0].severity === "critical") lead.setAttribute("tabindex", "-1");
      const parts = [
        heading,
        lead ? h("div", { class: "caveats", "aria-label": this.t("widget.caveats"), role: "group" },
          lead, caveats.slice(1).map((caveat) => this.caveatBlock(caveat))) : null,
        answer.interactions.length ? h("div", { class: "interactions" },
          h("h4", {}, this.t("widget.interactions")),
          h("ul", {}, answer.interactions.map((item) => h("li", { class: `caveat ${item.severity}` },
            h("strong", {}, `${item.medication}:`), item.text))))
          : null,
        answer.unrecognized_medications.length
          ? h("p", { class: "unrecognized" }, this.t("widget.unrecognized", { names: answer.unrecognized_medications.join(", ") }))
          : null,
        answer.recommendations.length
          ? h("ol", { class: "forms" }, answer.recommendations.map((item) => this.recommendationItem(item)))
          : h("p", { class: "none-recommended" }, this.t("widget.none_recommended")),
        answer.excluded.length ? h("details", { class: "excluded" },
          h("summary", {}, this.t("widget.excluded", { count: answer.excluded.length })),
          h("ul", {}, answer.excluded.map((item) => h("li", {}, h("strong", {}, `${item.name || item.form}: `),
            item.reasons.map((reason) => reason.text).join(" "))))) : null,
        h("div", { class: "disclaimer" },
          h("h4", {}, this.t("widget.disclaimer")),
          clinician ? h("p", { "data-code": "consult_clinician" }, clinician.text) : null,
          h("p", {}, answer.disclaimer)),
      ];
      results.replaceChildren(...parts.flat(Infinity).filter((part) => part instanceof Node));
      results.setAttribute("lang", this.locale);
      results.hidden = false;
      if (move) this.bringIntoView(heading, lead);
    }

    // After a submit the answer's first words must be in view, not the questions above it:
    // the heading with the most severe caveat under it when both fit the window, else the
    // caveat itself at the top. A critical caveat takes the focus (a screen reader reads it
    // first, and Tab continues from it); otherwise the heading does. Nothing traps the focus.
    bringIntoView(heading, lead) {
      let top = heading;
      if (lead) {
        const margin = parseFloat(getComputedStyle(heading).scrollMarginTop) || 0;
        const span = lead.getBoundingClientRect().bottom - heading.getBoundingClientRect().top;
        if (span + margin > window.innerHeight) top = lead;
      }
      top.scrollIntoView({ block: "start", inline: "nearest" });
      (lead && lead.hasAttribute("tabindex") ? lead : heading).focus({ preventScroll: true });
    }

    // Records an event for the product `sku` of the answer shown, with the visit's token. A
    // click or add-to-cart waits for the answer's view events: the server counts it only
    // after a view of that product in the same visit.
    async track(type, sku) {
      if (!this.answer || !this.shopKey) return false;
      if (type !== "view") await this.viewsSent;
      return this.sendEvent(type, sku, this.answer.recommendation_id);
    }

    async sendEvent(type, sku, recommendationId) {
      const response = await fetch(`${this.apiBase}/v1/events`, {
        method: "POST", mode: "cors", credentials: "omit", headers: this.headers(), keepalive: true,
        body: JSON.stringify({ type, recommendation_id: recommendationId, sku, session_id: visitToken() }),
      });
      return response.ok;
    }

    reportViews(answer) {
      if (!this.shopKey) return;
      const skus = answer.recommendations.flatMap((item) => (item.products || []).map((product) => product.sku));
      this.viewsSent = Promise.allSettled(skus.map((sku) => this.sendEvent("view", sku, answer.recommendation_id)));
    }

    // Product and cart links (the widget's cards, and a shop's own cards with
    // data-formwise-event="click" or "add_to_cart") record their event, then are followed.
    onResultsClick(event) {
      const link = event.target instanceof Element ? event.target.closest("a[data-formwise-event]") : null;
      if (!link || event.defaultPrevented) return;
      const type = link.getAttribute("data-formwise-event");
      let item = link;
      while (item && !this.productOf.has(item)) item = item.parentElement;
      const href = safeUrl(link.getAttribute("href"));
      if (!item || !LINK_EVENTS.includes(type)) return;
      if (!href) { event.preventDefault(); return; } // a link a shop's card gave an unsafe URL
      const product = this.productOf.get(item);
      const elsewhere = event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey || event.altKey
        || (link.target && link.target !== "_self");
      if (elsewhere) { this.track(type, product.sku).catch(() => {}); return; }
      // Record the event before leaving the page (keepalive lets it finish after), but never
      // hold the visitor up for long.
      event.preventDefault();
      let left = false;
      const leave = () => {
        if (left) return;
        left = true;
        clearTimeout(timer);
        window.location.assign(href);
      };
      const timer = setTimeout(leave, CLICK_EVENT_WAIT_MS);
      this.track(type, product.sku).catch(() => {}).finally(leave);
    }
  }

  if (!customElements.get("formwise-advisor")) customElements.define("formwise-advisor", FormwiseAdvisor);
})();
