/* Segment rule builder: edits the JSON rule tree kept in <textarea id="rules-json"> with
   controls for AND/OR groups and conditions, and fires "rules-changed" on <body> so htmx asks
   the server for the live size (debounced by the hx-trigger delay). No inline scripts. */
(function () {
  "use strict";

  var OPS = ["eq", "neq", "in", "contains", "gt", "lt", "between", "is_set"];
  var COUNT_OPS = ["gte", "gt", "eq", "lte", "lt"];
  var CHANNELS = ["sms", "email", "wechat", "voice"];
  var NUMERIC = /^-?\d+(\.\d+)?$/;
  var uid = 0;

  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") { e.textContent = attrs[k]; }
      else if (k === "className") { e.className = attrs[k]; }
      else { e.setAttribute(k, attrs[k]); }
    });
    (children || []).forEach(function (c) { if (c) { e.appendChild(c); } });
    return e;
  }

  function Builder(root) {
    this.root = root;
    this.meta = JSON.parse(document.getElementById(root.dataset.meta).textContent);
    this.L = this.meta.labels;
    this.source = document.getElementById(root.dataset.source);
    this.state = this.parse(this.source.value) || { op: "and", rules: [] };
    if (!this.state.rules) { this.state = { op: "and", rules: [this.state] }; }
    var self = this;
    this.source.addEventListener("input", function () {
      var parsed = self.parse(self.source.value);
      if (parsed) {
        self.state = parsed.rules ? parsed : { op: "and", rules: [parsed] };
        self.render(false);
      }
      self.changed(false);
    });
    this.render(false);
  }

  Builder.prototype.parse = function (text) {
    try {
      var v = JSON.parse(text);
      return v && typeof v === "object" && !Array.isArray(v) ? v : null;
    } catch (e) { return null; }
  };

  Builder.prototype.changed = function (write) {
    if (write !== false) { this.source.value = JSON.stringify(this.state, null, 1); }
    document.body.dispatchEvent(new CustomEvent("rules-changed", { bubbles: true }));
  };

  Builder.prototype.render = function (emit) {
    this.root.textContent = "";
    this.root.appendChild(this.group(this.state, "rules", null));
    if (emit) { this.changed(); }
  };

  // --- controls ---------------------------------------------------------------------------
  Builder.prototype.select = function (label, options, value, onChange, key, multiple) {
    var id = "rb-" + (++uid);
    var s = el("select", { id: id, className: "form-select form-select-sm", "data-key": key || "" });
    if (multiple) { s.multiple = true; s.size = Math.min(Math.max(options.length, 2), 5); }
    options.forEach(function (o) {
      var opt = el("option", { value: o[0], text: o[1] });
      if (multiple ? (value || []).indexOf(o[0]) >= 0 : String(o[0]) === String(value)) { opt.selected = true; }
      s.appendChild(opt);
    });
    s.addEventListener("change", function () {
      if (multiple) {
        onChange(Array.prototype.filter.call(s.options, function (o) { return o.selected; }).map(function (o) { return o.value; }));
      } else { onChange(s.value); }
    });
    return this.wrap(label, id, s);
  };

  Builder.prototype.input = function (label, type, value, onInput, key, extra) {
    var id = "rb-" + (++uid);
    var attrs = { id: id, type: type, className: "form-control form-control-sm", "data-key": key || "" };
    Object.keys(extra || {}).forEach(function (k) { attrs[k] = extra[k]; });
    var i = el("input", attrs);
    i.value = value === undefined || value === null ? "" : String(value);
    i.addEventListener("input", function () { onInput(i.value); });
    return this.wrap(label, id, i);
  };

  Builder.prototype.wrap = function (label, id, control) {
    return el("div", { className: "rb-control" }, [el("label", { className: "form-label small mb-0", "for": id, text: label }), control]);
  };

  Builder.prototype.button = function (text, onClick, cls) {
    var b = el("button", { type: "button", className: "btn btn-sm " + (cls || ""), text: text });
    b.addEventListener("click", onClick);
    return b;
  };

  function pairs(obj) { return Object.keys(obj).map(function (k) { return [k, obj[k]]; }); }

  // --- tree -------------------------------------------------------------------------------
  Builder.prototype.group = function (node, path, parent) {
    var self = this, L = this.L;
    if (!Array.isArray(node.rules)) { node.rules = []; }
    var box = el("fieldset", { className: "rb-group border rounded p-2 mb-2", "data-path": path });
    box.appendChild(el("legend", { className: "visually-hidden", text: L.group }));
    var head = el("div", { className: "d-flex flex-wrap gap-2 align-items-end mb-2" });
    head.appendChild(this.select(L.match, [["and", L.all], ["or", L.any]], node.op, function (v) { node.op = v; self.changed(); }, "op"));
    box.appendChild(head);
    node.rules.forEach(function (child, i) {
      var p = path + ".rules[" + i + "]";
      box.appendChild(child && child.rules ? self.group(child, p, node) : self.condition(child, p, node));
    });
    var foot = el("div", { className: "d-flex flex-wrap gap-2" });
    foot.appendChild(this.button("+ " + L.add_condition, function () {
      node.rules.push({ type: "attribute", field: "city", op: "eq", value: "" }); self.render(true);
    }, "rb-add-condition"));
    foot.appendChild(this.button("+ " + L.add_group, function () {
      node.rules.push({ op: "or", rules: [{ type: "attribute", field: "city", op: "eq", value: "" }] }); self.render(true);
    }, "rb-add-group"));
    if (parent) {
      foot.appendChild(this.button(L.remove_group, function () {
        parent.rules.splice(parent.rules.indexOf(node), 1); self.render(true);
      }, "btn-outline-danger"));
    }
    box.appendChild(foot);
    return box;
  };

  var DEFAULTS = {
    attribute: function () { return { type: "attribute", field: "city", op: "eq", value: "" }; },
    account: function () { return { type: "account", field: "industry", op: "eq", value: "" }; },
    tag: function () { return { type: "tag", match: "any", tag_ids: [] }; },
    event: function () { return { type: "event", name: "", count_op: "gte", count: 1, within_days: 30 }; },
    consent: function () { return { type: "consent", channel: "sms", status: "opted_in" }; },
    lifecycle: function () { return { type: "lifecycle", "in": ["customer"] }; },
    segment: function () { return { type: "segment", segment_id: "" }; }
  };

  Builder.prototype.condition = function (node, path, parent) {
    var self = this, L = this.L;
    node = node || DEFAULTS.attribute();
    var row = el("div", { className: "rb-condition border rounded p-2 mb-2 bg-white", "data-path": path, role: "group", "aria-label": L.condition });
    var line = el("div", { className: "d-flex flex-wrap gap-2 align-items-end" });
    line.appendChild(this.select(L.type, pairs(L.types), node.type, function (v) {
      var fresh = DEFAULTS[v] ? DEFAULTS[v]() : DEFAULTS.attribute();
      Object.keys(node).forEach(function (k) { delete node[k]; });
      Object.keys(fresh).forEach(function (k) { node[k] = fresh[k]; });
      self.render(true);
    }, "type"));
    var kind = node.type;
    if (kind === "attribute" || kind === "account") { this.fieldControls(line, node); }
    else if (kind === "tag") { this.tagControls(line, node); }
    else if (kind === "event") { this.eventControls(line, row, node, path); }
    else if (kind === "consent") {
      line.appendChild(this.select(L.channel, CHANNELS.map(function (c) { return [c, L.channels[c] || c]; }), node.channel, function (v) { node.channel = v; self.changed(); }, "channel"));
      line.appendChild(this.select(L.consent_status, pairs(L.consent_statuses), node.status, function (v) { node.status = v; self.changed(); }, "status"));
    } else if (kind === "lifecycle") {
      line.appendChild(this.select(L.stages, this.meta.stages.map(function (s) { return [s, L.stage_names[s] || s]; }), node["in"], function (v) { node["in"] = v; self.changed(); }, "in", true));
    } else if (kind === "segment") {
      var segs = [["", "—"]].concat(this.meta.segments.map(function (s) { return [s.id, s.name]; }));
      line.appendChild(this.select(L.segment, segs, node.segment_id, function (v) { node.segment_id = v; self.changed(); }, "segment_id"));
    }
    line.appendChild(this.button(L.remove, function () {
      parent.rules.splice(parent.rules.indexOf(node), 1); self.render(true);
    }, "btn-outline-danger rb-remove"));
    row.insertBefore(line, row.firstChild);
    return row;
  };

  Builder.prototype.fieldMeta = function (node) {
    var custom = node.type === "account" ? this.meta.account_fields : this.meta.contact_fields;
    for (var i = 0; i < custom.length; i++) { if (custom[i].key === node.field) { return custom[i]; } }
    return null;
  };

  function coerce(raw, numeric) {
    var v = String(raw).trim();
    return numeric && NUMERIC.test(v) ? Number(v) : v;
  }

  Builder.prototype.valueControls = function (line, node, numericHint, keyPrefix) {
    var self = this, L = this.L, key = keyPrefix || "value";
    var numeric = function (v) { return numericHint === true || (numericHint === "auto" && NUMERIC.test(String(v).trim())); };
    if (numericHint === "boolean" && (node.op === "eq" || node.op === "neq")) {
      if (typeof node.value !== "boolean") { node.value = true; }
      line.appendChild(this.select(L.value, [["true", L.yes], ["false", L.no]], String(node.value), function (v) { node.value = v === "true"; self.changed(); }, key));
    } else if (node.op === "is_set") {
      if (node.value !== false) { node.value = true; }
      line.appendChild(this.select(L.value, [["true", L.yes], ["false", L.no]], String(node.value), function (v) { node.value = v === "true"; self.changed(); }, key));
    } else if (node.op === "in") {
      var list = Array.isArray(node.value) ? node.value : (node.value === "" || node.value === undefined ? [] : [node.value]);
      node.value = list;
      line.appendChild(this.input(L.value, "text", list.join(", "), function (v) {
        node.value = v.split(/[,，]/).map(function (x) { return x.trim(); }).filter(Boolean).map(function (x) { return coerce(x, numeric(x)); });
        self.changed();
      }, key, { placeholder: L.values_hint }));
    } else if (node.op === "between") {
      var pair = Array.isArray(node.value) && node.value.length === 2 ? node.value : ["", ""];
      node.value = pair;
      line.appendChild(this.input(L.value, "text", pair[0], function (v) { pair[0] = coerce(v, numeric(v)); self.changed(); }, key));
      line.appendChild(this.input(L.value_to, "text", pair[1], function (v) { pair[1] = coerce(v, numeric(v)); self.changed(); }, key));
    } else {
      if (Array.isArray(node.value)) { node.value = node.value.length ? node.value[0] : ""; }
      line.appendChild(this.input(L.value, "text", node.value, function (v) { node.value = coerce(v, numeric(v)); self.changed(); }, key));
    }
  };

  Builder.prototype.fieldControls = function (line, node) {
    var self = this, L = this.L;
    var base = node.type === "account" ? L.account_fields : L.contact_fields;
    var custom = node.type === "account" ? this.meta.account_fields : this.meta.contact_fields;
    var options = pairs(base).concat(custom.map(function (f) { return [f.key, f.label]; }));
    line.appendChild(this.select(L.field, options, node.field, function (v) { node.field = v; self.render(true); }, "field"));
    line.appendChild(this.select(L.operator, OPS.map(function (o) { return [o, L.ops[o]]; }), node.op, function (v) { node.op = v; self.render(true); }, "op"));
    var fm = this.fieldMeta(node);
    this.valueControls(line, node, fm && fm.type === "boolean" ? "boolean" : Boolean(fm && fm.type === "number"));
  };

  Builder.prototype.tagControls = function (line, node) {
    var self = this, L = this.L;
    line.appendChild(this.select(L.tags, pairs(L.tag_match), node.match, function (v) { node.match = v; self.changed(); }, "match"));
    var tags = this.meta.tags.map(function (t) { return [t.id, t.name]; });
    line.appendChild(this.select(L.tags, tags, node.tag_ids, function (v) { node.tag_ids = v; self.changed(); }, "tag_ids", true));
  };

  Builder.prototype.eventControls = function (line, row, node, path) {
    var self = this, L = this.L;
    var listId = "rb-events-" + (++uid);
    var dl = el("datalist", { id: listId });
    this.meta.events.forEach(function (n) { dl.appendChild(el("option", { value: n })); });
    line.appendChild(this.input(L.event_name, "text", node.name, function (v) { node.name = v.trim(); self.changed(); }, "name", { list: listId }));
    line.appendChild(dl);
    line.appendChild(this.select(L.count_op, COUNT_OPS.map(function (o) { return [o, L.count_ops[o]]; }), node.count_op || "gte", function (v) { node.count_op = v; self.changed(); }, "count_op"));
    line.appendChild(this.input(L.count, "number", node.count === undefined ? 1 : node.count, function (v) {
      node.count = NUMERIC.test(v) ? parseInt(v, 10) : v; self.changed();
    }, "count", { min: "0", step: "1", inputmode: "numeric" }));
    var mode = node.within_days !== undefined ? "relative" : (node.from || node.to ? "absolute" : "any");
    line.appendChild(this.select(L.window, pairs(L.windows), mode, function (v) {
      delete node.within_days; delete node.from; delete node.to;
      if (v === "relative") { node.within_days = 30; }
      if (v === "absolute") { var d = new Date(); node.to = d.toISOString().slice(0, 10); d.setMonth(d.getMonth() - 1); node.from = d.toISOString().slice(0, 10); }
      self.render(true);
    }, "window"));
    if (mode === "relative") {
      line.appendChild(this.input(L.within_days, "number", node.within_days, function (v) {
        node.within_days = NUMERIC.test(v) ? parseInt(v, 10) : v; self.changed();
      }, "within_days", { min: "1", step: "1", inputmode: "numeric" }));
    } else if (mode === "absolute") {
      line.appendChild(this.input(L.from, "date", node.from, function (v) { node.from = v; self.changed(); }, "from"));
      line.appendChild(this.input(L.to, "date", node.to, function (v) { node.to = v; self.changed(); }, "to"));
    }
    var where = Array.isArray(node.where) ? node.where : [];
    where.forEach(function (w, i) {
      var sub = el("div", { className: "d-flex flex-wrap gap-2 align-items-end mt-2 ms-3", "data-path": path + ".where[" + i + "]" });
      sub.appendChild(self.input(L.property, "text", w.property, function (v) { w.property = v.trim(); self.changed(); }, "property"));
      sub.appendChild(self.select(L.operator, OPS.map(function (o) { return [o, L.ops[o]]; }), w.op || "eq", function (v) { w.op = v; self.render(true); }, "op"));
      self.valueControls(sub, w, "auto");
      sub.appendChild(self.button(L.remove, function () {
        where.splice(i, 1);
        if (!where.length) { delete node.where; }
        self.render(true);
      }, "btn-outline-danger"));
      row.appendChild(sub);
    });
    var add = el("div", { className: "mt-2" });
    add.appendChild(this.button("+ " + L.add_property, function () {
      node.where = where; where.push({ property: "", op: "eq", value: "" }); self.render(true);
    }));
    row.appendChild(add);
  };

  // Mark the control an error names (e.g. "rules.rules[0].value") after a preview or save.
  function markError(scope) {
    document.querySelectorAll("#rule-builder .is-invalid").forEach(function (e) {
      e.classList.remove("is-invalid"); e.removeAttribute("aria-invalid");
    });
    var holder = scope.querySelector("[data-error-path]");
    var path = holder ? holder.getAttribute("data-error-path") : "";
    if (!path || path.indexOf("rules") !== 0) { return; }
    var best = null;
    document.querySelectorAll("#rule-builder [data-path]").forEach(function (n) {
      var p = n.getAttribute("data-path");
      if (path.indexOf(p) === 0 && (!best || p.length > best.getAttribute("data-path").length)) { best = n; }
    });
    if (!best) { return; }
    var rest = path.slice(best.getAttribute("data-path").length).replace(/^\./, "").split(/[.[]/)[0];
    var ctl = rest ? best.querySelector('[data-key="' + rest + '"]') : null;
    (ctl || best).classList.add("is-invalid");
    if (ctl) { ctl.setAttribute("aria-invalid", "true"); }
  }

  document.addEventListener("DOMContentLoaded", function () {
    var root = document.querySelector("[data-builder]");
    if (!root) { return; }
    new Builder(root);
    markError(document);
  });
  document.addEventListener("htmx:afterSwap", function (e) {
    if (e.target && e.target.id === "segment-preview") { markError(e.target); }
  });
})();
