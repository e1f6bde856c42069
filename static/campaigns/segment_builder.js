/*
 * Segment rule builder for the admin's segment form.
 *
 * SegmentRulesWidget renders the rules JSON in a hidden textarea followed by
 * an empty <div class="segment-builder"> naming three admin endpoints. This
 * script turns that div into nested groups of rules and writes the tree back
 * into the textarea after every change, so the ordinary form submit saves it
 * and the server validates it as usual.
 *
 * The rule format is the compiler's (campaigns/segments/compiler.py): a group
 * is {"match": "all" | "any", "rules": [...], "negate"?: true}; a rule is
 * {"field", "op", "value"?, ...the field's params}. Empty values are left out
 * of the JSON instead of being saved as null, so the server's "enter a value"
 * and "required" checks read them the same way.
 *
 * The field allow-list, its operators and which value widget fits each
 * operator all come from the catalogue endpoint: nothing here knows a field
 * by name except where the catalogue says a param autocompletes.
 *
 * A preview posts the tree 400 ms after the last change and shows the count,
 * errors (each naming its rule, as the server words it), warnings, a sample
 * and, for staff allowed to see them, the SQL and query plan. Responses to
 * older edits are dropped, so a slow count never overwrites a newer one.
 */
(function () {
  "use strict";

  // Groups nest at most this deep, the top group counted (compiler.MAX_DEPTH).
  const MAX_DEPTH = 6;
  const PREVIEW_DELAY_MS = 400;
  const SUGGEST_DELAY_MS = 200;
  const MAX_CHIPS_SHOWN = 12;
  const FILTER_CHOICES_FROM = 10;
  // Operators on event properties (compiler._event_filter): the text operators and number comparisons.
  const PROPERTY_OPS = ["equals", "not_equals", "contains", "not_contains", "starts_with", "ends_with", "in",
    "not_in", "matches", "gt", "gte", "lt", "lte", "is_set", "is_not_set"];
  const PROPERTY_NO_VALUE = new Set(["is_set", "is_not_set"]);
  const LIST_KINDS = new Set(["list", "multichoice"]);
  const SCALAR_KINDS = new Set(["text", "choice"]);
  const NUMBER_KINDS = new Set(["number", "days"]);

  let lastId = 0;
  function nextId(prefix) {
    lastId += 1;
    return `${prefix}-${lastId}`;
  }

  /** Create an element: el("input", {type: "text", onInput: fn, dataset: {...}}, [children]). */
  function el(tag, props, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "text") node.textContent = value;
      else if (key === "className") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key.startsWith("on") && typeof value === "function") {
        node.addEventListener(key.slice(2).toLowerCase(), value);
      } else if (["value", "checked", "selected", "disabled", "hidden", "open", "multiple"].includes(key)) {
        node[key] = value;
      } else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of [].concat(children || [])) {
      if (child === null || child === undefined || child === false) continue;
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  function isGroup(node) {
    return node !== null && typeof node === "object" && !Array.isArray(node) && Array.isArray(node.rules);
  }

  function isEmpty(value) {
    return value === undefined || value === null || value === "" || (Array.isArray(value) && value.length === 0);
  }

  /** Set a key, or drop it when the value is empty (see the module comment). */
  function put(node, key, value) {
    if (isEmpty(value)) delete node[key];
    else node[key] = value;
  }

  function toNumber(text) {
    const trimmed = String(text).trim();
    if (trimmed === "") return undefined;
    const number = Number(trimmed);
    return Number.isFinite(number) ? number : trimmed;
  }

  function asList(value) {
    if (Array.isArray(value)) return value.map(String);
    if (typeof value === "string") return value.split(",").map((v) => v.trim()).filter(Boolean);
    return isEmpty(value) ? [] : [String(value)];
  }

  function csrfToken() {
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    if (input && input.value) return input.value;
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  async function getJSON(url, options) {
    const response = await fetch(url, {credentials: "same-origin", headers: {Accept: "application/json"},
      ...options});
    let data = null;
    try {
      data = await response.json();
    } catch (error) {
      // An HTML page instead of JSON: usually the login page after the session ended.
      throw new Error(response.ok ? "the server did not answer with JSON (are you still logged in?)"
        : `the server answered ${response.status}`);
    }
    if (!response.ok && !(data && Array.isArray(data.errors))) {
      throw new Error(`the server answered ${response.status}`);
    }
    return data;
  }

  function formatSeconds(seconds) {
    if (typeof seconds !== "number") return "";
    if (seconds < 1) return `${Math.max(1, Math.round(seconds * 1000))} ms`;
    return `${seconds.toFixed(2)} s`;
  }

  class SegmentBuilder {
    constructor(root) {
      this.root = root;
      this.textarea = root.previousElementSibling && root.previousElementSibling.matches("textarea")
        ? root.previousElementSibling
        : root.parentElement.querySelector("textarea.segment-rules-json");
      this.urls = {
        catalogue: root.dataset.catalogueUrl,
        preview: root.dataset.previewUrl,
        suggest: root.dataset.suggestUrl,
      };
      this.segmentId = root.dataset.segmentId ? Number(root.dataset.segmentId) : null;
      // The sample links to people's admin pages; the admin may be mounted anywhere.
      this.adminRoot = (this.urls.catalogue || "").replace(/campaigns\/segment\/builder\/catalogue\/?$/, "")
        || "/admin/";
      this.ids = new WeakMap();
      this.openLists = new WeakSet();
      this.paths = new Map();
      this.suggestCache = new Map();
      this.previewSeq = 0;
      this.previewTimer = null;
      this.previewAbort = null;
      this.focusNext = null;
      this.listening = false;
    }

    // --- Start-up ---------------------------------------------------------------

    async start() {
      this.root.replaceChildren(el("p", {className: "sb-loading", text: "Loading the rule builder…"}));
      const raw = (this.textarea.value || "").trim();
      let tree;
      try {
        tree = raw ? JSON.parse(raw) : {match: "all", rules: []};
      } catch (error) {
        this.fallback(`The saved rules are not valid JSON (${error.message}). Fix the JSON, or start over.`);
        return;
      }
      if (!isGroup(tree)) {
        this.fallback("The saved rules do not start with a group (match all or any). Fix the JSON, or start over.");
        return;
      }
      try {
        this.catalogue = await getJSON(this.urls.catalogue);
      } catch (error) {
        this.fallback(`The list of fields could not be loaded: ${error.message}. The rules can still be edited as JSON.`,
          false);
        return;
      }
      this.indexCatalogue();
      this.tree = tree;
      this.textarea.hidden = true; // the builder edits it from now on
      this.textarea.classList.remove("sb-raw");
      this.buildLayout();
      this.listen();
      this.render();
      this.write();
      this.previewNow();
    }

    /** Show the JSON itself when the builder cannot work, so nothing is lost or silently rewritten. */
    fallback(message, canReset = true) {
      this.textarea.hidden = false;
      this.textarea.classList.add("sb-raw");
      const reset = canReset ? el("button", {type: "button", className: "sb-btn", text: "Start over with no rules",
        onClick: () => {
          this.textarea.value = JSON.stringify({match: "all", rules: []});
          this.start();
        }}) : null;
      this.root.replaceChildren(el("div", {className: "sb-fallback", role: "alert"}, [el("p", {text: message}), reset]));
    }

    indexCatalogue() {
      const catalogue = this.catalogue;
      this.fields = new Map();
      this.groups = [];
      this.opLabels = {};
      for (const field of catalogue.fields || []) {
        this.fields.set(field.key, field);
        if (!this.groups.includes(field.group)) this.groups.push(field.group);
        for (const op of field.ops) this.opLabels[op.key] = op.label;
      }
      this.topics = catalogue.topics || [];
      this.segments = (catalogue.segments || []).filter(([pk]) => pk !== this.segmentId);
      this.presets = catalogue.presets || {};
      this.canExplain = Boolean(catalogue.can_explain);
    }

    buildLayout() {
      this.treeBox = el("div", {className: "sb-tree"});
      this.countBox = el("div", {className: "sb-count", "aria-live": "polite", "aria-atomic": "true"});
      this.statusBox = el("span", {className: "sb-status", "aria-hidden": "true"});
      this.errorBox = el("div", {className: "sb-errors", hidden: true});
      this.warningBox = el("div", {className: "sb-warnings", hidden: true});
      this.sampleBox = el("div", {className: "sb-sample"});
      const summaryId = nextId("sb-preview");
      this.summary = el("section", {className: "sb-summary", "aria-labelledby": summaryId}, [
        el("div", {className: "sb-summary-head"}, [
          el("h3", {className: "sb-heading", id: summaryId, text: "Preview"}), this.statusBox]),
        this.countBox, this.errorBox, this.warningBox,
      ]);
      this.explainBox = null;
      if (this.canExplain) {
        this.sqlPre = el("pre", {className: "sb-code", tabindex: "0", "aria-label": "SQL"});
        this.planPre = el("pre", {className: "sb-code", tabindex: "0", "aria-label": "Query plan"});
        this.explainBox = el("details", {className: "sb-explain", hidden: true}, [
          el("summary", {text: "SQL and query plan"}),
          el("h4", {className: "sb-subheading", text: "SQL"}), this.sqlPre,
          el("h4", {className: "sb-subheading", text: "Query plan"}), this.planPre,
        ]);
      }
      // The count stays in view beside the rules while they scroll (sticky within .sb-top only, so it
      // never slides over the sample below).
      this.root.replaceChildren(el("div", {className: "sb-layout"}, [
        el("div", {className: "sb-top"}, [
          el("section", {className: "sb-rules", "aria-label": "Rules"}, this.treeBox),
          this.summary,
        ]),
        el("div", {className: "sb-details"}, [this.sampleBox, this.explainBox]),
      ]));
    }

    listen() {
      if (this.listening) return;
      this.listening = true;
      // Folding a choice list moves what is below it, so a pointer folds it on click, after the click
      // landed; focus arriving while the pointer is down is that same click and waits for it.
      const fold = (event) => {
        for (const widget of this.root.querySelectorAll(".sb-multi")) widget.sbFold(event.target);
      };
      let pointing = false;
      document.addEventListener("pointerdown", () => { pointing = true; }, true);
      document.addEventListener("pointerup", () => setTimeout(() => { pointing = false; }), true);
      document.addEventListener("click", fold);
      document.addEventListener("focusin", (event) => { if (!pointing) fold(event); });
      // Enter in a builder input would submit the whole form; chip inputs use it to add a value instead.
      this.root.addEventListener("keydown", (event) => {
        if (event.key === "Enter" && event.target.matches("input:not([type=checkbox]):not([type=button])")) {
          event.preventDefault();
        }
      });
    }

    // --- State ------------------------------------------------------------------

    idOf(node) {
      if (!this.ids.has(node)) this.ids.set(node, nextId("n"));
      return this.ids.get(node);
    }

    focusKey(node, role) {
      return `${this.idOf(node)}:${role}`;
    }

    write() {
      this.textarea.value = JSON.stringify(this.tree);
    }

    /** Record a change: write the JSON, re-render when the shape changed, and preview soon. */
    changed(rerender) {
      this.write();
      if (rerender) this.render();
      this.schedulePreview();
    }

    kindOf(field, opKey) {
      const op = field && field.ops.find((o) => o.key === opKey);
      return op ? op.value : "text";
    }

    initialValue(field, kind) {
      // "Performed event at least N times" reads best with N already 1.
      if (field.key === "event" && kind === "number") return 1;
      return undefined;
    }

    paramDefault(param) {
      if (param.default !== undefined && param.default !== null) return param.default;
      if (param.type === "choice" && param.required && param.choices && param.choices.length) {
        return param.choices[0][0];
      }
      return undefined;
    }

    convertValue(value, from, to) {
      if (isEmpty(value) || to === "none") return undefined;
      if (from === to) return value;
      if (LIST_KINDS.has(to) && (LIST_KINDS.has(from) || SCALAR_KINDS.has(from))) return asList(value);
      if (SCALAR_KINDS.has(to) && (LIST_KINDS.has(from) || SCALAR_KINDS.has(from))) {
        return Array.isArray(value) ? value[0] : value;
      }
      if (NUMBER_KINDS.has(to) && NUMBER_KINDS.has(from)) return value;
      if (from === "daterange" && to === "date") return Array.isArray(value) ? value[0] : undefined;
      if (from === "date" && to === "daterange") return [value, ""];
      return undefined;
    }

    setField(rule, key) {
      for (const name of Object.keys(rule)) delete rule[name];
      const field = this.fields.get(key);
      if (field) {
        rule.field = key;
        rule.op = field.ops[0].key;
        put(rule, "value", this.initialValue(field, field.ops[0].value));
        for (const param of field.params) put(rule, param.name, this.paramDefault(param));
      }
      this.focusNext = this.focusKey(rule, "field");
      this.changed(true);
    }

    setOp(rule, field, opKey) {
      const from = this.kindOf(field, rule.op);
      const to = this.kindOf(field, opKey);
      rule.op = opKey;
      let value = this.convertValue(rule.value, from, to);
      if (isEmpty(value)) value = this.initialValue(field, to);
      put(rule, "value", value);
      if (from !== to) this.focusNext = this.focusKey(rule, "op");
      this.changed(from !== to);
    }

    addRule(group) {
      const rule = {};
      group.rules.push(rule);
      this.focusNext = this.focusKey(rule, "field");
      this.changed(true);
    }

    addGroup(group) {
      const rule = {};
      group.rules.push({match: "all", rules: [rule]});
      this.focusNext = this.focusKey(rule, "field");
      this.changed(true);
    }

    remove(parent, node) {
      const index = parent.rules.indexOf(node);
      if (index < 0) return;
      parent.rules.splice(index, 1);
      // Focus moves to the next sibling, or the previous one, or the group's "+ Rule".
      const neighbour = parent.rules[index] || parent.rules[index - 1];
      this.focusNext = neighbour ? this.focusKey(neighbour, isGroup(neighbour) ? "match" : "field")
        : this.focusKey(parent, "add-rule");
      this.changed(true);
    }

    // --- Rendering the tree -----------------------------------------------------

    render() {
      const active = document.activeElement;
      const wanted = this.focusNext || (active && this.root.contains(active) ? active.dataset.focus : null);
      this.focusNext = null;
      // The new elements carry no error marks: rule numbers may have shifted, and the preview that follows
      // every change marks the rules that are wrong now.
      this.paths = new Map();
      this.treeBox.replaceChildren(this.renderGroup(this.tree, null, "", 0));
      if (wanted) {
        const target = this.treeBox.querySelector(`[data-focus="${CSS.escape(wanted)}"]`);
        if (target) target.focus();
      }
    }

    renderGroup(group, parent, path, depth) {
      const isRoot = depth === 0;
      const name = isRoot ? "Top group" : `Group ${path}`;
      const matchId = nextId("sb-match");
      const head = el("div", {className: "sb-group-head"}, [
        isRoot ? null : el("span", {className: "sb-num", text: path, "aria-hidden": "true"}),
        el("label", {for: matchId, className: "sb-match-label", text: isRoot ? "People who match" : "Match"}),
        el("select", {id: matchId, className: "sb-match", "aria-label": `${name}: match`,
          dataset: {focus: this.focusKey(group, "match")},
          onChange: (event) => { group.match = event.target.value; this.changed(true); }}, [
          el("option", {value: "all", text: "all of", selected: group.match !== "any"}),
          el("option", {value: "any", text: "any of", selected: group.match === "any"}),
        ]),
        el("span", {className: "sb-match-tail", text: "these rules"}),
        el("label", {className: "sb-not", title: "Invert the group: people who do not match it"}, [
          el("input", {type: "checkbox", checked: Boolean(group.negate), "aria-label": `${name}: not (invert)`,
            dataset: {focus: this.focusKey(group, "negate")},
            onChange: (event) => { put(group, "negate", event.target.checked || undefined); this.changed(true); }}),
          "not",
        ]),
        isRoot ? null : this.removeButton(`Remove group ${path}`, () => this.remove(parent, group)),
      ]);
      const children = el("div", {className: "sb-children"});
      group.rules.forEach((child, index) => {
        if (child === null || typeof child !== "object" || Array.isArray(child)) {
          child = group.rules[index] = {}; // not a rule at all: offer an empty one to fill in
        }
        const childPath = path ? `${path}.${index + 1}` : String(index + 1);
        if (index > 0) {
          children.append(el("div", {className: "sb-join", "aria-hidden": "true",
            text: group.match === "any" ? "or" : "and"}));
        }
        children.append(isGroup(child) ? this.renderGroup(child, group, childPath, depth + 1)
          : this.renderRule(child, group, childPath));
      });
      if (!group.rules.length) {
        children.append(el("p", {className: "sb-empty", text: isRoot
          ? "No rules yet: everyone matches (erased people never do). Add a rule to narrow it down."
          : "This group is empty and matches everyone. Add a rule to it or remove it."}));
      }
      const deepest = depth + 1 >= MAX_DEPTH;
      const actions = el("div", {className: "sb-group-actions"}, [
        el("button", {type: "button", className: "sb-btn sb-add", text: "+ Rule",
          "aria-label": isRoot ? "Add a rule" : `Add a rule to group ${path}`,
          dataset: {focus: this.focusKey(group, "add-rule")}, onClick: () => this.addRule(group)}),
        el("button", {type: "button", className: "sb-btn sb-add", text: "+ Group",
          "aria-label": isRoot ? "Add a group" : `Add a group to group ${path}`,
          disabled: deepest, title: deepest ? `Groups nest at most ${MAX_DEPTH} deep.` : null,
          dataset: {focus: this.focusKey(group, "add-group")}, onClick: () => this.addGroup(group)}),
      ]);
      const errors = el("div", {className: "sb-node-errors", id: nextId("sb-errors")});
      const box = el("div", {
        className: `sb-group${isRoot ? " sb-root" : ""}${group.negate ? " sb-negated" : ""} sb-depth-${depth % 2}`,
        role: "group", "aria-label": name, dataset: {path},
      }, [head, errors, children, actions]);
      if (path) this.paths.set(path, {box, errors, label: null});
      return box;
    }

    removeButton(label, onClick) {
      return el("button", {type: "button", className: "sb-remove", "aria-label": label, title: label, onClick},
        el("span", {"aria-hidden": "true", text: "×"}));
    }

    renderRule(rule, parent, path) {
      const field = this.fields.get(rule.field);
      const hintId = nextId("sb-hint");
      const errors = el("div", {className: "sb-node-errors", id: nextId("sb-errors")});
      const described = field && field.help ? `${hintId} ${errors.id}` : errors.id;
      const line = el("div", {className: "sb-line"}, [this.fieldSelect(rule, field, described)]);
      const params = el("div", {className: "sb-params"});
      if (field) {
        const kind = this.kindOf(field, rule.op);
        line.append(this.opSelect(rule, field));
        const widget = this.valueWidget(rule, field, kind);
        if (widget) line.append(widget);
        // Property filters take whole lines: they go after the one-line params.
        const ordered = [...field.params.filter((p) => p.type !== "properties"),
          ...field.params.filter((p) => p.type === "properties")];
        for (const param of ordered) params.append(this.paramWidget(rule, field, param));
      } else if (rule.field) {
        line.append(el("span", {className: "sb-unknown",
          text: "This field is no longer available; remove the rule or choose another field."}));
      }
      const box = el("div", {className: "sb-rule", role: "group", "aria-label": `Rule ${path}`, dataset: {path}}, [
        el("span", {className: "sb-num", text: path, "aria-hidden": "true"}),
        el("div", {className: "sb-rule-main"}, [
          line,
          params.childElementCount ? params : null,
          field && field.help ? el("div", {className: "sb-hint", id: hintId, text: field.help}) : null,
          errors,
        ]),
        this.removeButton(`Remove rule ${path}`, () => this.remove(parent, rule)),
      ]);
      this.paths.set(path, {box, errors, label: field ? field.label : null});
      return box;
    }

    fieldSelect(rule, field, describedBy) {
      const select = el("select", {className: "sb-field", "aria-label": "Field", "aria-describedby": describedBy,
        dataset: {focus: this.focusKey(rule, "field")},
        onChange: (event) => this.setField(rule, event.target.value)});
      if (!rule.field) select.append(el("option", {value: "", text: "Choose a field…", selected: true}));
      else if (!field) select.append(el("option", {value: rule.field, text: `${rule.field} (not available)`, selected: true}));
      for (const group of this.groups) {
        const optgroup = el("optgroup", {label: group});
        for (const candidate of this.fields.values()) {
          if (candidate.group !== group) continue;
          optgroup.append(el("option", {value: candidate.key, text: candidate.label,
            selected: candidate.key === rule.field}));
        }
        select.append(optgroup);
      }
      return select;
    }

    opSelect(rule, field) {
      const select = el("select", {className: "sb-op", "aria-label": "Operator",
        dataset: {focus: this.focusKey(rule, "op")},
        onChange: (event) => this.setOp(rule, field, event.target.value)});
      if (!field.ops.some((op) => op.key === rule.op)) {
        select.append(el("option", {value: rule.op || "", text: rule.op ? `${rule.op} (not available)` : "Choose…",
          selected: true}));
      }
      for (const op of field.ops) {
        select.append(el("option", {value: op.key, text: op.label, selected: op.key === rule.op}));
      }
      return select;
    }

    // --- Value widgets ----------------------------------------------------------

    valueWidget(rule, field, kind) {
      const set = (value) => { put(rule, "value", value); this.changed(false); };
      const focus = this.focusKey(rule, "value");
      switch (kind) {
        case "none":
          return null;
        case "number":
        case "days":
          return this.numberInput(rule.value, kind === "days" ? "Number of days" : "Value", set, {focus,
            min: kind === "days" ? 0 : null, step: kind === "days" ? 1 : "any",
            placeholder: kind === "days" ? "days" : "N"});
        case "date":
          return el("input", {type: "date", className: "sb-date", "aria-label": "Date", value: rule.value || "",
            dataset: {focus}, onInput: (event) => set(event.target.value || undefined)});
        case "daterange":
          return this.rangeInputs(rule.value, "date", "Date", set, focus);
        case "numberrange":
          return this.rangeInputs(rule.value, "number", "Number", set, focus);
        case "list":
          return this.chipList(rule.value, set, {
            label: field.label, focus,
            // "Bought" autocompletes what was bought, by the rule's own "by" choice.
            suggest: field.params.some((p) => p.name === "by")
              ? () => ({kind: rule.by || "category"}) : null,
          });
        case "choice":
          return this.choiceSelect(field.choices, rule.value, "Value", `Choose…`, set, focus);
        case "multichoice":
          return this.multiChoice(rule, field, set);
        case "topic":
          return this.choiceSelect(this.topics, rule.value, "Topic",
            this.topics.length ? "Choose a topic…" : "No topics yet", (v) => set(toNumber(v ?? "")), focus);
        case "segment":
          return this.choiceSelect(this.segments, rule.value, "Segment",
            this.segments.length ? "Choose a segment…" : "No other segments yet", (v) => set(toNumber(v ?? "")), focus);
        default:
          return el("input", {type: "text", className: "sb-text", "aria-label": "Value",
            value: isEmpty(rule.value) ? "" : String(rule.value), dataset: {focus},
            onInput: (event) => set(event.target.value === "" ? undefined : event.target.value)});
      }
    }

    numberInput(value, label, onChange, options) {
      return el("input", {type: "number", className: "sb-number", "aria-label": label,
        step: options.step ?? "any", min: options.min, placeholder: options.placeholder,
        value: isEmpty(value) ? "" : String(value), dataset: {focus: options.focus},
        onInput: (event) => onChange(toNumber(event.target.value))});
    }

    rangeInputs(value, type, label, onChange, focus) {
      const pair = Array.isArray(value) ? value : ["", ""];
      const inputs = [0, 1].map((i) => el("input", {type, step: type === "number" ? "any" : null,
        className: type === "date" ? "sb-date" : "sb-number", "aria-label": `${label} ${i ? "to" : "from"}`,
        value: isEmpty(pair[i]) ? "" : String(pair[i]), dataset: {focus: `${focus}:${i}`},
        onInput: () => {
          const values = inputs.map((input) => (type === "number" ? toNumber(input.value) ?? "" : input.value));
          onChange(values.every((v) => v === "") ? undefined : values);
        }}));
      return el("span", {className: "sb-range"}, [inputs[0], el("span", {className: "sb-and", text: "and"}), inputs[1]]);
    }

    choiceSelect(choices, value, label, placeholder, onChange, focus) {
      const current = isEmpty(value) ? "" : String(value);
      const select = el("select", {className: "sb-choice", "aria-label": label, dataset: {focus},
        onChange: (event) => onChange(event.target.value === "" ? undefined : event.target.value)});
      select.append(el("option", {value: "", text: placeholder, selected: current === ""}));
      let found = current === "";
      for (const [code, text] of choices) {
        const selected = String(code) === current;
        found = found || selected;
        select.append(el("option", {value: String(code), text, selected}));
      }
      if (!found) select.append(el("option", {value: current, text: `${current} (not available)`, selected: true}));
      return select;
    }

    /** A free list of strings as removable chips; Enter or a comma adds what was typed. */
    chipList(value, onChange, options) {
      const items = asList(value);
      const chips = el("span", {className: "sb-chips"});
      const input = el("input", {type: "text", className: "sb-chip-input", dataset: {focus: options.focus},
        "aria-label": `${options.label}: values (Enter or comma adds one)`});
      const pending = () => input.value.split(",").map((v) => v.trim()).filter(Boolean);
      const emit = () => {
        const all = [...items, ...pending().filter((v) => !items.includes(v))];
        onChange(all.length ? all : undefined);
      };
      const draw = () => {
        chips.replaceChildren(...items.map((item, index) => this.chip(item, () => {
          items.splice(index, 1);
          draw();
          emit();
          input.focus();
        })));
        input.placeholder = items.length ? "Add another…" : "Type, then Enter";
      };
      const commit = () => {
        for (const item of pending()) if (!items.includes(item)) items.push(item);
        input.value = "";
        draw();
        emit();
      };
      input.addEventListener("input", (event) => {
        // A comma ends a value; so does picking a suggestion from the list.
        if (input.value.includes(",") || event.inputType === "insertReplacementText" || !event.inputType) commit();
        else emit();
      });
      input.addEventListener("keydown", (event) => {
        if (event.key === "Enter") {
          event.preventDefault();
          commit();
        } else if (event.key === "Backspace" && input.value === "" && items.length) {
          items.pop();
          draw();
          emit();
        }
      });
      input.addEventListener("blur", () => { if (pending().length) commit(); });
      const box = el("span", {className: "sb-list", onClick: (event) => {
        if (event.target === box || event.target === chips) input.focus();
      }}, [chips, input]);
      if (options.suggest) box.append(this.suggestions(input, options.suggest));
      draw();
      return box;
    }

    chip(text, onRemove, label) {
      return el("span", {className: "sb-chip"}, [
        el("span", {text: label || text}),
        el("button", {type: "button", className: "sb-chip-remove", "aria-label": `Remove ${label || text}`,
          onClick: onRemove}, el("span", {"aria-hidden": "true", text: "×"})),
      ]);
    }

    /** Checkboxes with a filter box (and EU / EEA presets for countries), the chosen ones as chips. */
    multiChoice(rule, field, onChange) {
      const choices = field.choices || [];
      const labels = new Map(choices.map(([code, text]) => [String(code), text]));
      const selected = new Set(asList(rule.value));
      const noun = field.label.toLowerCase();
      const chips = el("span", {className: "sb-chips", "aria-live": "polite"});
      const summaryText = el("span");
      const boxes = new Map();
      const emit = () => {
        // Keep the catalogue's order (then unknown codes), so the JSON does not churn.
        const ordered = [...choices.map(([code]) => String(code)).filter((c) => selected.has(c)),
          ...[...selected].filter((c) => !labels.has(c))];
        onChange(ordered.length ? ordered : undefined);
      };
      const sync = () => {
        const codes = [...selected];
        const shown = codes.slice(0, MAX_CHIPS_SHOWN).map((code) => this.chip(code, () => {
          selected.delete(code);
          sync();
          emit();
        }, labels.get(code) || code));
        if (codes.length > MAX_CHIPS_SHOWN) {
          shown.push(el("span", {className: "sb-more", text: `and ${codes.length - MAX_CHIPS_SHOWN} more`}));
        }
        chips.replaceChildren(...shown);
        for (const [code, box] of boxes) box.checked = selected.has(code);
        summaryText.textContent = selected.size ? `Change (${selected.size} chosen)` : `Choose ${noun}`;
      };
      const options = el("div", {className: "sb-options", role: "group", "aria-label": `${field.label} choices`});
      for (const [code, text] of choices) {
        const box = el("input", {type: "checkbox", value: String(code), onChange: (event) => {
          if (event.target.checked) selected.add(String(code));
          else selected.delete(String(code));
          sync();
          emit();
        }});
        boxes.set(String(code), box);
        options.append(el("label", {className: "sb-option", dataset: {search: `${text} ${code}`.toLowerCase()}},
          [box, text]));
      }
      const tools = el("div", {className: "sb-multi-tools"});
      if (choices.length >= FILTER_CHOICES_FROM) {
        tools.append(el("input", {type: "search", className: "sb-filter", placeholder: "Filter…",
          "aria-label": `Filter ${noun} choices`, dataset: {focus: this.focusKey(rule, "filter")},
          onInput: (event) => {
            const query = event.target.value.trim().toLowerCase();
            for (const option of options.children) {
              option.hidden = Boolean(query) && !option.dataset.search.includes(query);
            }
          }}));
      }
      if (field.type === "country") {
        for (const [name, codes] of Object.entries(this.presets)) {
          tools.append(el("button", {type: "button", className: "sb-btn sb-small", text: name,
            "aria-label": `Add the ${name} countries`, title: `Add the ${codes.length} ${name} countries`,
            onClick: () => { codes.forEach((c) => selected.add(String(c))); sync(); emit(); }}));
        }
      }
      tools.append(el("button", {type: "button", className: "sb-btn sb-small", text: "Clear",
        "aria-label": `Clear the chosen ${noun} values`,
        onClick: () => { selected.clear(); sync(); emit(); }}));
      const details = el("details", {className: "sb-choose",
        open: selected.size === 0 || this.openLists.has(rule),
        onToggle: () => (details.open ? this.openLists.add(rule) : this.openLists.delete(rule)),
        onKeydown: (event) => {
          if (event.key !== "Escape" || !details.open) return;
          event.preventDefault();
          details.open = false;
          details.querySelector("summary").focus();
        }}, [
        el("summary", {dataset: {focus: this.focusKey(rule, "value")}}, summaryText),
        tools, options,
      ]);
      sync();
      const widget = el("div", {className: "sb-multi", role: "group", "aria-label": `${field.label} values`},
        [chips, details]);
      // Like a drop-down: once something is chosen, the list folds when people move on to another control.
      widget.sbFold = (target) => {
        if (details.open && selected.size && !widget.contains(target)) details.open = false;
      };
      return widget;
    }

    // --- Params -----------------------------------------------------------------

    paramWidget(rule, field, param) {
      const focus = this.focusKey(rule, `param:${param.name}`);
      const set = (value, rerender) => { put(rule, param.name, value); this.changed(Boolean(rerender)); };
      const labelled = (control) => el("label", {className: "sb-param"}, [
        el("span", {className: "sb-param-label", text: param.label}), control]);
      switch (param.type) {
        case "number":
          return labelled(this.numberInput(rule[param.name], param.label, set, {focus,
            placeholder: param.default !== undefined ? String(param.default) : null}));
        case "event":
        case "message": {
          const input = el("input", {type: "text", className: "sb-text", "aria-label": param.label,
            value: rule[param.name] || "", dataset: {focus},
            placeholder: param.type === "event" ? "e.g. Product Viewed" : "any email",
            onInput: (event) => set(event.target.value.trim() === "" ? undefined : event.target.value)});
          return labelled(el("span", {className: "sb-suggest"}, [input,
            this.suggestions(input, () => ({kind: param.type}))]));
        }
        case "choice":
          return labelled(this.choiceSelect(param.choices || [], rule[param.name], param.label,
            param.required ? "Choose…" : "Any", (value) => set(value, true), focus));
        case "daterange":
          return el("span", {className: "sb-param", role: "group", "aria-label": param.label}, [
            el("span", {className: "sb-param-label", text: param.label}),
            this.rangeInputs(rule[param.name], "date", param.label, set, focus)]);
        case "properties":
          return this.whereFilters(rule, param);
        default:
          return labelled(el("input", {type: "text", className: "sb-text", "aria-label": param.label,
            value: isEmpty(rule[param.name]) ? "" : String(rule[param.name]), dataset: {focus},
            onInput: (event) => set(event.target.value === "" ? undefined : event.target.value)}));
      }
    }

    /** Filters on the event's properties: property, operator, value rows with add and remove. */
    whereFilters(rule, param) {
      const filters = Array.isArray(rule[param.name]) ? rule[param.name] : [];
      const rows = filters.map((filter, index) => {
        const n = index + 1;
        const property = el("input", {type: "text", className: "sb-text sb-property",
          "aria-label": `Property ${n}`, placeholder: "property", value: filter.property || "",
          dataset: {focus: this.focusKey(filter, "property")},
          onInput: (event) => { filter.property = event.target.value.trim(); this.changed(false); }});
        const value = el("input", {type: "text", className: "sb-text", "aria-label": `Property ${n} value`,
          placeholder: "value", value: isEmpty(filter.value) ? "" : String(filter.value),
          hidden: PROPERTY_NO_VALUE.has(filter.op), dataset: {focus: this.focusKey(filter, "value")},
          onInput: (event) => { put(filter, "value", event.target.value); this.changed(false); }});
        const op = el("select", {className: "sb-op", "aria-label": `Property ${n} operator`,
          dataset: {focus: this.focusKey(filter, "op")},
          onChange: (event) => {
            filter.op = event.target.value;
            value.hidden = PROPERTY_NO_VALUE.has(filter.op);
            if (value.hidden) delete filter.value;
            this.changed(false);
          }}, PROPERTY_OPS.map((key) => el("option", {value: key, text: this.opLabels[key] || key,
          selected: key === (filter.op || "equals")})));
        return el("div", {className: "sb-where-row", role: "group", "aria-label": `Property filter ${n}`}, [
          el("span", {className: "sb-suggest"}, [property, this.suggestions(property,
            () => ({kind: "property", event: rule.event || ""}))]),
          op, value,
          this.removeButton(`Remove property filter ${n}`, () => {
            filters.splice(index, 1);
            put(rule, param.name, filters.length ? filters : undefined);
            const neighbour = filters[index] || filters[index - 1];
            this.focusNext = neighbour ? this.focusKey(neighbour, "property") : this.focusKey(rule, "add-where");
            this.changed(true);
          }),
        ]);
      });
      const add = el("button", {type: "button", className: "sb-btn sb-small", text: "+ Property filter",
        "aria-label": "Add a filter on the event's properties", dataset: {focus: this.focusKey(rule, "add-where")},
        onClick: () => {
          const filter = {property: "", op: "equals", value: ""};
          rule[param.name] = [...filters, filter];
          this.focusNext = this.focusKey(filter, "property");
          this.changed(true);
        }});
      return el("div", {className: "sb-param sb-where", role: "group", "aria-label": `${param.label} (event properties)`},
        [el("span", {className: "sb-param-label", text: param.label}), el("div", {className: "sb-where-rows"}, rows), add]);
    }

    // --- Autocomplete -----------------------------------------------------------

    /** Attach a <datalist> to an input and fill it from the suggest endpoint as people type. */
    suggestions(input, query) {
      const list = el("datalist", {id: nextId("sb-suggest")});
      input.setAttribute("list", list.id);
      input.setAttribute("autocomplete", "off");
      let timer = null;
      let seq = 0;
      const load = async () => {
        const params = query();
        if (!params || !params.kind) return;
        const url = `${this.urls.suggest}?${new URLSearchParams({...params, q: input.value.trim()})}`;
        const mine = ++seq;
        let results = this.suggestCache.get(url);
        if (!results) {
          try {
            results = (await getJSON(url)).results || [];
          } catch (error) {
            return; // suggestions are a convenience; typing still works without them
          }
          this.suggestCache.set(url, results);
        }
        if (mine !== seq) return;
        list.replaceChildren(...results.map(([value, label]) => el("option", {value,
          label: label && label !== value ? label : null})));
      };
      input.addEventListener("focus", load);
      input.addEventListener("input", () => {
        clearTimeout(timer);
        timer = setTimeout(load, SUGGEST_DELAY_MS);
      });
      return list;
    }

    // --- Preview ----------------------------------------------------------------

    schedulePreview() {
      clearTimeout(this.previewTimer);
      this.root.classList.add("sb-updating");
      this.statusBox.textContent = "Updating…";
      this.previewTimer = setTimeout(() => this.previewNow(), PREVIEW_DELAY_MS);
    }

    async previewNow() {
      clearTimeout(this.previewTimer);
      const seq = ++this.previewSeq;
      if (this.previewAbort) this.previewAbort.abort();
      const abort = new AbortController();
      this.previewAbort = abort;
      this.root.classList.add("sb-updating");
      this.statusBox.textContent = "Updating…";
      let data;
      try {
        data = await getJSON(this.urls.preview, {
          method: "POST", signal: abort.signal,
          headers: {"Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrfToken()},
          body: JSON.stringify({rules: this.tree, segment_id: this.segmentId}),
        });
      } catch (error) {
        if (error.name === "AbortError" || seq !== this.previewSeq) return;
        this.showPreview({errors: [], failure: `The preview is not available: ${error.message}.`});
        return;
      }
      if (seq !== this.previewSeq) return; // an answer to an older edit: a newer one is on its way
      this.showPreview(data);
    }

    showPreview(data) {
      this.root.classList.remove("sb-updating");
      this.statusBox.textContent = "";
      const errors = data.errors || [];
      this.markErrors(errors);
      if (data.failure) {
        this.countBox.replaceChildren(el("p", {className: "sb-count-note", text: data.failure}));
      } else if (errors.length) {
        this.countBox.replaceChildren(el("b", {className: "sb-count-number sb-none", text: "—"}),
          el("span", {className: "sb-count-note",
            text: errors.length === 1 ? "Fix the rule below to see who matches." : `Fix the ${errors.length} problems below to see who matches.`}));
      } else {
        this.countBox.replaceChildren(
          el("b", {className: "sb-count-number", text: Number(data.count).toLocaleString()}),
          el("span", {className: "sb-count-note", text: data.count === 1 ? "person matches" : "people match"}),
          el("span", {className: "sb-count-time", text: `counted in ${formatSeconds(data.seconds)}`}));
      }
      this.errorBox.hidden = !errors.length;
      this.errorBox.replaceChildren(...(errors.length ? [el("ul", {className: "sb-messages"},
        errors.map((message) => el("li", {}, this.errorLink(message))))] : []));
      const warnings = data.warnings || [];
      this.warningBox.hidden = !warnings.length;
      this.warningBox.replaceChildren(...(warnings.length ? [el("ul", {className: "sb-messages"},
        warnings.map((message) => el("li", {text: message})))] : []));
      this.showSample(errors.length || data.failure ? null : data);
      if (this.explainBox) {
        const shown = Boolean(data.sql || data.plan);
        this.explainBox.hidden = !shown;
        this.sqlPre.textContent = data.sql || "";
        this.planPre.textContent = data.plan || "";
      }
    }

    /** An error naming a rule ("Rule 2.1 (Number of orders): …") links to that rule. */
    errorLink(message) {
      const match = /^Rule (\d+(?:\.\d+)*)\b/.exec(message);
      if (!match || !this.paths.has(match[1])) return message;
      return el("a", {href: "#", className: "sb-error-link", text: message, onClick: (event) => {
        event.preventDefault();
        const target = this.paths.get(match[1]);
        if (!target) return;
        const control = target.box.querySelector("select, input, button");
        target.box.scrollIntoView({block: "center", behavior: "smooth"});
        if (control) control.focus({preventScroll: true});
      }});
    }

    markErrors(errors) {
      for (const {box, errors: slot} of this.paths.values()) {
        box.classList.remove("sb-invalid");
        slot.replaceChildren();
      }
      for (const message of errors) {
        const match = /^Rule (\d+(?:\.\d+)*)\b/.exec(message);
        const target = match && this.paths.get(match[1]);
        if (!target) continue;
        let text = message.slice(match[0].length);
        if (target.label && text.startsWith(` (${target.label})`)) text = text.slice(target.label.length + 3);
        text = text.replace(/^:\s*/, "");
        target.box.classList.add("sb-invalid");
        target.errors.append(el("p", {className: "sb-error", text: text.charAt(0).toUpperCase() + text.slice(1)}));
      }
    }

    showSample(data) {
      if (!data || !data.count) {
        this.sampleBox.replaceChildren(data ? el("p", {className: "sb-empty", text: "Nobody matches these rules yet."})
          : "");
        return;
      }
      const columns = data.columns || [];
      const sample = data.sample || [];
      const emailColumn = columns.indexOf("Email");
      const head = el("tr", {}, [el("th", {scope: "col", text: "Name"}),
        ...columns.map((c) => el("th", {scope: "col", text: c}))]);
      const rows = sample.map((person) => {
        const email = emailColumn >= 0 ? person.values[emailColumn] : "";
        return el("tr", {}, [
          el("td", {}, el("a", {href: `${this.adminRoot}subscribers/subscriber/${person.id}/change/`,
            target: "_blank", rel: "noopener", text: person.name || email || `#${person.id}`})),
          ...person.values.map((value) => el("td", {text: value})),
        ]);
      });
      this.sampleBox.replaceChildren(
        el("h3", {className: "sb-heading", text: sample.length < data.count
          ? `Sample: the newest ${sample.length} of ${Number(data.count).toLocaleString()}`
          : `All ${sample.length} matching ${sample.length === 1 ? "person" : "people"}`}),
        el("div", {className: "sb-table-wrap", tabindex: "0", role: "region", "aria-label": "Sample of matching people"},
          el("table", {className: "sb-table"}, [el("thead", {}, head), el("tbody", {}, rows)])));
    }
  }

  function startAll() {
    for (const root of document.querySelectorAll(".segment-builder")) {
      if (root.dataset.started) continue;
      root.dataset.started = "1";
      new SegmentBuilder(root).start();
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", startAll);
  else startAll();
})();
