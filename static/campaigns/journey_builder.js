/*
 * Journey builder: show only the fields the chosen trigger and each step's kind use.
 *
 * The journey form and its step inline are ordinary Django admin forms; the
 * server clears fields a trigger or kind does not use, so hiding them here is
 * only about what people see. Without JavaScript every field stays visible.
 *
 * Also: new steps get the next position and a suggested key, and the “then go
 * to” fields offer the keys of the steps on the page.
 */
(function () {
  "use strict";

  const TRIGGER_FIELDS = {
    signup: [],
    event: ["trigger_event", "trigger_filters"],
    segment_entry: ["trigger_segment"],
    date: ["trigger_date_field", "trigger_time"],
    inactivity: ["inactivity_days"],
  };
  const STEP_FIELDS = {
    send_email: ["email", "next_step"],
    wait: ["wait_amount", "wait_unit", "next_step"],
    wait_until: ["until_time", "until_weekday", "until_date_field", "until_offset_days", "next_step"],
    wait_event: ["event_name", "event_filters", "wait_amount", "wait_unit", "next_step", "else_step"],
    branch: ["condition", "engagement_step", "engagement", "next_step", "else_step"],
    split: ["split_percent", "next_step", "else_step"],
    update_profile: ["update_action", "update_key", "update_value", "update_topic", "next_step"],
    exit: [],
  };
  const UPDATE_FIELDS = {
    add_tag: ["update_key"], remove_tag: ["update_key"], set_attribute: ["update_key", "update_value"],
    subscribe_topic: ["update_topic"], unsubscribe_topic: ["update_topic"], stop_marketing: [],
  };
  const ALL_STEP_FIELDS = new Set(Object.values(STEP_FIELDS).flat());
  const KEY_PREFIX = {
    send_email: "email", wait: "wait", wait_until: "wait-until", wait_event: "wait-for", branch: "branch",
    split: "split", update_profile: "update", exit: "exit",
  };
  const PATH_LABELS = {wait_event: ["Did it: go to", "Timed out: go to"], branch: ["Yes: go to", "No: go to"],
    split: ["Path A goes to", "Path B goes to"]};

  /** Return the field name a row or field box is for, from its "field-<name>" class. */
  function fieldNames(node) {
    return [...node.classList].filter((c) => c.startsWith("field-")).map((c) => c.slice(6));
  }

  /** Show the rows and boxes in ``scope`` for ``wanted`` fields and hide the others of ``managed``. */
  function show(scope, managed, wanted) {
    for (const box of scope.querySelectorAll(".fieldBox")) {
      // The box's parent holds it and its help text.
      const names = fieldNames(box);
      if (names.some((n) => managed.has(n))) box.parentElement.hidden = !names.some((n) => wanted.has(n));
    }
    for (const row of scope.querySelectorAll(".form-row")) {
      const names = fieldNames(row).filter((n) => managed.has(n));
      if (names.length) row.hidden = !names.some((n) => wanted.has(n));
    }
  }

  function setupTrigger(form) {
    const trigger = form.querySelector("#id_trigger");
    const entryRule = form.querySelector("#id_entry_rule");
    const managed = new Set([...Object.values(TRIGGER_FIELDS).flat(), "reentry_days"]);
    function update() {
      const wanted = new Set(TRIGGER_FIELDS[trigger.value] || []);
      if (entryRule && entryRule.value === "once_per_period") wanted.add("reentry_days");
      for (const fieldset of form.querySelectorAll("fieldset")) {
        if (fieldset.closest(".inline-group")) continue;
        show(fieldset, managed, wanted);
      }
    }
    if (!trigger) return;
    trigger.addEventListener("change", update);
    if (entryRule) entryRule.addEventListener("change", update);
    update();
  }

  function stepField(step, name) {
    return step.querySelector(`[name$="-${name}"]`);
  }

  function setupStep(step) {
    if (step.dataset.journeyStep || step.id.endsWith("-empty")) return;
    step.dataset.journeyStep = "1";
    const kind = stepField(step, "kind");
    const action = stepField(step, "update_action");
    if (!kind) return;
    function update() {
      const wanted = new Set(STEP_FIELDS[kind.value] || []);
      if (kind.value === "update_profile" && action && action.value in UPDATE_FIELDS) {
        for (const name of ["update_key", "update_value", "update_topic"]) wanted.delete(name);
        for (const name of UPDATE_FIELDS[action.value]) wanted.add(name);
      }
      show(step, ALL_STEP_FIELDS, wanted);
      const labels = PATH_LABELS[kind.value] || ["Then go to", "Second path goes to"];
      for (const [index, name] of [[0, "next_step"], [1, "else_step"]]) {
        const input = stepField(step, name);
        const label = input && step.querySelector(`label[for="${input.id}"]`);
        if (label) label.textContent = labels[index] + ":";
      }
      const key = stepField(step, "key");
      if (key && !key.value && !key.dataset.suggested && kind.value) suggestKey(key, kind.value);
      step.dataset.kind = kind.value;
    }
    kind.addEventListener("change", update);
    if (action) action.addEventListener("change", update);
    const key = stepField(step, "key");
    if (key) key.addEventListener("input", () => { delete key.dataset.suggested; refreshKeys(); });
    update();
  }

  function steps() {
    return [...document.querySelectorAll(".mk-journey-steps .inline-related")]
      .filter((s) => !s.id.endsWith("-empty"));
  }

  function usedKeys() {
    return new Set(steps().map((s) => (stepField(s, "key") || {}).value).filter(Boolean));
  }

  function suggestKey(input, kind) {
    const used = usedKeys();
    const prefix = KEY_PREFIX[kind] || "step";
    let n = 1;
    while (used.has(`${prefix}-${n}`)) n += 1;
    input.value = `${prefix}-${n}`;
    input.dataset.suggested = "1";
    refreshKeys();
  }

  function refreshKeys() {
    const list = document.getElementById("journey-step-keys");
    if (!list) return;
    list.replaceChildren(...[...usedKeys()].map((key) => Object.assign(document.createElement("option"),
      {value: key})));
  }

  function nextPosition(step) {
    const position = stepField(step, "position");
    if (!position) return;
    const others = steps().filter((s) => s !== step)
      .map((s) => Number((stepField(s, "position") || {}).value || 0));
    position.value = others.length ? Math.max(...others) + 1 : 0;
  }

  /**
   * Start the segment rule builder of a step added on the page.
   *
   * The blank step the admin copies carries a builder marked "later"; running
   * segment_builder.js again starts every builder not started yet (it skips
   * the ones running), so the new step gets a live builder too.
   */
  function startRuleBuilders(step) {
    const roots = [...step.querySelectorAll('.segment-builder[data-started="later"]')];
    if (!roots.length) return;
    for (const root of roots) delete root.dataset.started;
    const source = document.querySelector('script[src*="campaigns/segment_builder.js"]');
    if (!source) return;
    const script = document.createElement("script");
    script.src = source.src;
    document.head.append(script);
  }

  function start() {
    const form = document.getElementById("journey_form");
    if (!form) return;
    setupTrigger(form);
    for (const step of steps()) setupStep(step);
    refreshKeys();
    document.addEventListener("formset:added", (event) => {
      const step = event.target;
      if (!step.closest || !step.closest(".mk-journey-steps")) return;
      nextPosition(step);
      setupStep(step);
      startRuleBuilders(step);
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
