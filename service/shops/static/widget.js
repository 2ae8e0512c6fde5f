/*
 * formwise advisor: <formwise-advisor shop-key="pk_..." locale="en"></formwise-advisor>
 *
 * One script tag, no build step. Styles live in a shadow root; theme it from the page with
 * CSS custom properties on the element (see the README's "Web shops" section):
 *   formwise-advisor { --formwise-accent: #0b6e4f; --formwise-font-family: inherit; }
 * Attributes: shop-key (the shop's publishable key), locale (en or de), limit (1-20),
 * api-base (defaults to the origin this script was loaded from).
 * It fires a "formwise-recommendation" event ({recommendation_id}) when an answer arrives,
 * and element.track("add_to_cart", sku) records a shop event for that answer.
 * The texts and vocabulary below are written in by the server (GET /widget.js).
 */
(() => {
  "use strict";

  const TEXTS = /*FORMWISE_TEXTS*/{};
  const VOCABULARY = /*FORMWISE_VOCABULARY*/{};
  const SCRIPT_ORIGIN = document.currentScript && document.currentScript.src
    ? new URL(document.currentScript.src, document.baseURI).origin
    : window.location.origin;
  const CLICK_EVENT_WAIT_MS = 1500;

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
    h2 { font-size: 1.35em; margin: 0 0 .25em; }
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
    .check input { margin-top: .35em; width: 1.05em; height: 1.05em; accent-color: var(--formwise-accent, #0b6e4f); }
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
    .caveat { border-left: 4px solid var(--formwise-border-color, #c9ced6); padding: .5em .75em; margin: 0 0 .5em;
              border-radius: 0 calc(var(--formwise-radius, 8px) / 2) calc(var(--formwise-radius, 8px) / 2) 0; }
    .caveat.critical { border-color: var(--formwise-critical, #b00020); background: var(--formwise-critical-background, #fdecee);
                       font-size: 1.05em; }
    .caveat.warning { border-color: var(--formwise-warning, #8a5300); background: var(--formwise-warning-background, #fff4e0); }
    .caveat.info { border-color: var(--formwise-info, #1a5fb4); background: var(--formwise-info-background, #eef4fb); }
    .caveat strong { margin-right: .35em; }
    ol.forms { padding-left: 0; list-style: none; margin: 0; }
    ol.forms > li { border: 1px solid var(--formwise-border-color, #c9ced6); border-radius: var(--formwise-radius, 8px);
                    padding: .75em 1em; margin: 0 0 .75em; }
    .rank { font-weight: 400; color: var(--formwise-muted-color, #57606a); margin-right: .4em; }
    .badge { display: inline-block; font-size: .8em; font-weight: 600; padding: .05em .5em; margin-left: .5em;
             border-radius: 999px; background: var(--formwise-info-background, #eef4fb); }
    .badge.caution { background: var(--formwise-warning-background, #fff4e0); color: var(--formwise-warning, #8a5300); }
    ul { margin: .25em 0 .5em; padding-left: 1.25em; }
    ul.reasons { list-style: none; padding-left: .25em; }
    .effect { font-weight: 700; display: inline-block; width: 1.1em; }
    .products ul { list-style: none; padding-left: 0; }
    .products li { margin: .3em 0; }
    .product-facts { display: block; font-size: .92em; color: var(--formwise-muted-color, #57606a); }
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

  class FormwiseAdvisor extends HTMLElement {
    static get observedAttributes() { return ["locale"]; }

    constructor() {
      super();
      this.attachShadow({ mode: "open" });
      this.answer = null;
    }

    connectedCallback() { this.render(); }

    attributeChangedCallback() { if (this.shadowRoot.childNodes.length) this.render(); }

    get locale() { return resolveLocale(this.getAttribute("locale") || document.documentElement.lang); }

    get apiBase() { return (this.getAttribute("api-base") || SCRIPT_ORIGIN).replace(/\/+$/, ""); }

    get shopKey() { return (this.getAttribute("shop-key") || "").trim(); }

    t(key, values) {
      const text = (TEXTS[this.locale] && TEXTS[this.locale][key]) || TEXTS[VOCABULARY.default_locale][key] || key;
      return text.replace(/\{(\w+)\}/g, (match, name) => (values && name in values ? values[name] : match));
    }

    $(id) { return this.shadowRoot.getElementById(id); }

    render() {
      const t = (key, values) => this.t(key, values);
      const choice = (group, word) => h("div", { class: "check" },
        h("input", { type: "checkbox", id: `${group}-${word}`, name: group, value: word }),
        h("label", { for: `${group}-${word}` }, t(`widget.${group === "conditions" ? "condition" : "goal"}.${word}`)));
      const form = h("form", { novalidate: true, onsubmit: (event) => { event.preventDefault(); this.submit(); } },
        h("h2", { id: "title" }, t("widget.title")),
        h("p", {}, t("widget.intro")),
        h("p", { class: "hint" }, t("widget.required_note")),
        h("div", { class: "field" },
          h("label", { for: "age" }, t("widget.age")),
          h("input", { id: "age", name: "age", type: "number", inputmode: "numeric", min: 0, max: 120, step: 1,
                       required: true, "aria-required": "true", "aria-describedby": "age-error" }),
          h("p", { id: "age-error", class: "error", hidden: true })),
        h("div", { class: "field" },
          h("label", { for: "sex" }, t("widget.sex")),
          h("select", { id: "sex", name: "sex" },
            VOCABULARY.sexes.map((word) => h("option", { value: word }, t(`widget.sex.${word}`))))),
        h("div", { class: "check" },
          h("input", { type: "checkbox", id: "pregnant", name: "pregnant" }),
          h("label", { for: "pregnant" }, t("widget.pregnant"))),
        h("div", { class: "check last" },
          h("input", { type: "checkbox", id: "breastfeeding", name: "breastfeeding" }),
          h("label", { for: "breastfeeding" }, t("widget.breastfeeding"))),
        h("div", { class: "field" },
          h("label", { for: "kidney" }, t("widget.kidney")),
          h("select", { id: "kidney", name: "kidney" },
            ["none", "yes", "dialysis"].map((value) => h("option", { value }, t(`widget.kidney.${value}`))))),
        h("div", { class: "field" },
          h("label", { for: "egfr" }, t("widget.egfr")),
          h("input", { id: "egfr", name: "egfr", type: "number", inputmode: "decimal", min: 0, max: 250, step: "any",
                       "aria-describedby": "egfr-hint egfr-error" }),
          h("p", { id: "egfr-hint", class: "hint" }, t("widget.egfr.hint")),
          h("p", { id: "egfr-error", class: "error", hidden: true })),
        h("fieldset", {},
          h("legend", { id: "conditions-legend" }, t("widget.conditions")),
          h("div", { class: "choices" }, VOCABULARY.conditions.map((word) => choice("conditions", word)))),
        h("fieldset", {},
          h("legend", { id: "goals-legend" }, t("widget.goals")),
          h("div", { class: "choices" }, VOCABULARY.goals.map((word) => choice("goals", word)))),
        h("div", { class: "field" },
          h("label", { for: "medications" }, t("widget.medications")),
          h("textarea", { id: "medications", name: "medications", rows: 3, autocomplete: "off" })),
        h("button", { type: "submit", id: "submit" }, t("widget.submit")),
        h("p", { id: "status", class: "status", role: "status", "aria-live": "polite" }));
      const wrapper = h("div", { lang: this.locale, part: "container" },
        h("style", {}, STYLE), form, h("section", { id: "results", "aria-labelledby": "results-heading", hidden: true }));
      this.shadowRoot.replaceChildren(wrapper);
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
      if (this.shopKey) headers["X-API-Key"] = this.shopKey;
      return headers;
    }

    async submit() {
      const status = this.$("status");
      const read = this.readProfile();
      if (read.invalid) {
        status.textContent = this.t("widget.error.check");
        this.$(read.invalid).focus();
        return;
      }
      const button = this.$("submit");
      const results = this.$("results");
      button.disabled = true;
      results.setAttribute("aria-busy", "true");
      status.textContent = this.t("widget.loading");
      const limit = Math.min(20, Math.max(1, parseInt(this.getAttribute("limit") || "3", 10) || 3));
      try {
        const response = await fetch(`${this.apiBase}/v1/recommendations`, {
          method: "POST", mode: "cors", credentials: "omit", headers: this.headers(),
          body: JSON.stringify({ profile: read.profile, options: { limit, locale: this.locale } }),
        });
        const body = await response.json().catch(() => null);
        if (!response.ok) {
          console.warn("formwise:", response.status, body && (body.detail || body.title));
          status.textContent = this.t(response.status === 429 ? "widget.error.rate_limited" : "widget.error.failed");
          return;
        }
        this.answer = body;
        this.showAnswer(body);
        status.textContent = this.t("widget.results_ready");
        this.dispatchEvent(new CustomEvent("formwise-recommendation", {
          bubbles: true, composed: true, detail: { recommendation_id: body.recommendation_id },
        }));
        this.reportViews(body);
      } catch (error) {
        console.warn("formwise:", error);
        status.textContent = this.t("widget.error.failed");
      } finally {
        button.disabled = false;
        results.removeAttribute("aria-busy");
      }
    }

    caveatBlock(caveat) {
      return h("div", { class: `caveat ${caveat.severity}`, "data-code": caveat.code,
                        role: caveat.severity === "critical" ? "alert" : null },
        h("strong", {}, `${this.t(`widget.severity.${caveat.severity}`)}:`), caveat.text);
    }

    productItem(product) {
      const money = (amount) => new Intl.NumberFormat(this.locale, { style: "currency", currency: product.currency })
        .format(amount);
      const facts = [
        this.t("widget.product.units", { units: product.units_per_day, mg: product.elemental_mg_per_day }),
        this.t("widget.product.cost", { cost: money(product.cost_per_day) }),
        this.t("widget.product.pack", { days: product.days_per_pack }),
      ].join(" · ");
      return h("li", { class: "product", "data-sku": product.sku },
        h("a", { href: product.url, onclick: (event) => this.followProduct(event, product) }, product.name),
        " ", h("span", { class: "product-facts" }, `${money(product.price)} · ${facts}`));
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
            ? h("ul", {}, item.products.map((product) => this.productItem(product)))
            : h("p", {}, this.t("widget.product.none"))) : null);
    }

    showAnswer(answer) {
      const results = this.$("results");
      const heading = h("h3", { id: "results-heading", tabindex: "-1" }, this.t("widget.results"));
      const caveats = answer.caveats.filter((caveat) => caveat.code !== "consult_clinician");
      const clinician = answer.caveats.find((caveat) => caveat.code === "consult_clinician");
      const parts = [
        heading,
        caveats.length ? h("div", { class: "caveats", "aria-label": this.t("widget.caveats"), role: "group" },
          caveats.map((caveat) => this.caveatBlock(caveat))) : null,
        answer.recommendations.length
          ? h("ol", { class: "forms" }, answer.recommendations.map((item) => this.recommendationItem(item)))
          : h("p", { class: "none-recommended" }, this.t("widget.none_recommended")),
        answer.interactions.length ? h("div", { class: "interactions" },
          h("h4", {}, this.t("widget.interactions")),
          h("ul", {}, answer.interactions.map((item) => h("li", {}, h("strong", {}, `${item.medication}: `), item.text))))
          : null,
        answer.unrecognized_medications.length
          ? h("p", { class: "unrecognized" }, this.t("widget.unrecognized", { names: answer.unrecognized_medications.join(", ") }))
          : null,
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
      results.hidden = false;
      heading.focus();
    }

    async track(type, sku, options) {
      if (!this.answer || !this.shopKey) return false;
      const response = await fetch(`${this.apiBase}/v1/events`, {
        method: "POST", mode: "cors", credentials: "omit", headers: this.headers(), keepalive: true,
        body: JSON.stringify({ type, recommendation_id: this.answer.recommendation_id, sku }),
        signal: options && options.signal,
      });
      return response.ok;
    }

    reportViews(answer) {
      for (const item of answer.recommendations) {
        for (const product of item.products || []) this.track("view", product.sku).catch(() => {});
      }
    }

    followProduct(event, product) {
      const newTab = event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey || event.altKey;
      if (newTab) { this.track("click", product.sku).catch(() => {}); return; }
      // Record the click before leaving the page, but never hold the visitor up for long.
      event.preventDefault();
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(), CLICK_EVENT_WAIT_MS);
      this.track("click", product.sku, { signal: controller.signal }).catch(() => {}).finally(() => {
        clearTimeout(timer);
        window.location.assign(product.url);
      });
    }
  }

  if (!customElements.get("formwise-advisor")) customElements.define("formwise-advisor", FormwiseAdvisor);
})();
