// The storyboard page: draws the JSON state the server sends, edits through the JSON
// endpoints (posts/views.py), and listens on the post's websocket.
//
// Rules this file keeps:
// - The database is the truth. Every write answers with the whole fresh state, which is
//   drawn as is; pushes over the socket are hints that make the page re-read
//   /posts/<id>/state (on every (re)connect too), except job progress, drawn in place.
// - Every write sends the storyboard version it was based on; a refused (409) write shows
//   who saved first and keeps the producer's text on screen until they reload.
// - A field the producer is typing in is never redrawn under their caret, and text not
//   saved yet is never replaced by a redraw.

const root = document.getElementById("storyboard");
const cfg = {
  base: root.dataset.base, // "/posts/42/"
  wsPath: root.dataset.ws,
  adminUrl: root.dataset.adminUrl,
  me: root.dataset.username,
  csrf: root.dataset.csrf,
};

const SHOT_STATUS = { pending: "Pending", producing: "Producing", ready: "Ready", failed: "Failed" };
const FIELD_NAMES = { kind: "kind", duration: "duration", script: "script", visual_prompt: "visual prompt" };
// The server names model fields; the page names what it sends.
const SERVER_FIELDS = { duration_seconds: "duration", manual_asset: "asset" };
const BACKOFF_FIRST_MS = 500;
const BACKOFF_MAX_MS = 15000;
const BACKOFF_JITTER = 0.3;
const TOAST_MS = 4000;

let state = JSON.parse(document.getElementById("storyboard-state").textContent);
let requestSeq = 0; // order in which state-bearing requests were started
let appliedSeq = 0; // the newest of those whose state is drawn
let rendering = false;

// Field keys are "<shot id>:<field>".
const held = new Set(); // fields with text typed but not saved: never overwritten by a redraw
const edits = new Map(); // key -> {version, value}: what the server had when the producer started editing
const sending = new Map(); // key -> text in flight, so change + blur do not save twice
const cards = new Map(); // shot id -> card parts

// ------------------------------------------------------------------ small helpers

function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") el.className = value;
    else if (name === "text") el.textContent = value;
    else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) el.append(child);
  }
  return el;
}

function seconds(value) {
  const n = Number(value);
  return `${Number.isInteger(n) ? n : n.toFixed(1)} s`;
}

function when(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

function shotById(id) {
  return state.shots.find((shot) => shot.id === id);
}

function fieldValue(shot, field) {
  if (field === "duration") return String(shot.duration);
  return String(shot[field] ?? "");
}

function sameValue(field, a, b) {
  return field === "duration" ? Number(a) === Number(b) : a === b;
}

// ------------------------------------------------------------------ talking to the server

// Writes go one at a time, so each reads the version the previous one produced.
let writeChain = Promise.resolve();
let writesInFlight = 0;

function enqueue(task) {
  writesInFlight += 1;
  setSaveState("saving");
  const run = writeChain.then(task).finally(() => {
    writesInFlight -= 1;
    root.dataset.pendingWrites = String(writesInFlight);
  });
  root.dataset.pendingWrites = String(writesInFlight);
  writeChain = run.catch(() => {});
  return run;
}

async function call(method, path, body) {
  const headers = { "X-CSRFToken": cfg.csrf, Accept: "application/json" };
  let payload = body;
  if (body && !(body instanceof FormData)) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(cfg.base + path, { method, headers, body: payload, credentials: "same-origin" });
  } catch {
    return { kind: "network" };
  }
  const type = response.headers.get("content-type") || "";
  if (response.status === 404) return { kind: "gone" };
  if (response.status >= 500) return { kind: "server", status: response.status };
  // The login page (a redirect followed) or Django's HTML 403 for a stale CSRF cookie.
  if (response.redirected || !type.includes("application/json")) return { kind: "session" };
  let data;
  try {
    data = await response.json();
  } catch {
    return { kind: "session" };
  }
  if (response.ok) return { kind: "ok", data };
  if (response.status === 409) return { kind: "conflict", data };
  if (response.status === 403) return { kind: "forbidden", data };
  return { kind: "invalid", data };
}

// Draw a state unless a newer one is already on screen (responses can overtake each other).
function accept(next, seq) {
  if (next.post.version < state.post.version) return false;
  if (next.post.version === state.post.version && seq < appliedSeq) return false;
  appliedSeq = Math.max(appliedSeq, seq);
  state = next;
  render();
  return true;
}

let refreshing = null;
let refreshAgain = false;

function refresh() {
  if (refreshing) {
    refreshAgain = true;
    return refreshing;
  }
  refreshing = (async () => {
    do {
      refreshAgain = false;
      const seq = ++requestSeq;
      const answer = await call("GET", "state");
      if (answer.kind === "ok") accept(answer.data, seq);
      // Unreachable: the socket is down too and its reconnect re-reads the state; no banner needed.
      else if (answer.kind !== "network") reportFailure(answer);
    } while (refreshAgain);
  })().finally(() => {
    refreshing = null;
  });
  return refreshing;
}

// One write: send, draw the answer, or explain the refusal. `context` says what was edited.
async function write(method, path, body, context = {}) {
  const seq = ++requestSeq;
  const answer = await call(method, path, body);
  if (answer.kind === "ok") {
    const stale = els.banners.querySelector('[data-kind="error"]');
    if (stale && !stale.querySelector(".your-text")) stale.remove(); // keep any banner holding the producer's words
    accept(answer.data, seq);
    setSaveState("saved");
    return answer;
  }
  setSaveState("failed");
  if (answer.kind === "conflict") {
    showConflict(answer.data.error, context);
  } else if (answer.kind === "invalid") {
    showInvalid(answer.data, context);
  } else {
    reportFailure(answer, context);
  }
  return answer;
}

function reportFailure(answer, context = {}) {
  if (answer.kind === "session") {
    showBanner("session", {
      title: "Your session ended: reload to sign in again.",
      yourText: context.yourText,
      label: context.label,
      buttons: [{ text: "Reload to sign in", onclick: () => window.location.reload() }],
    });
    setLive("offline");
  } else if (answer.kind === "gone") {
    showBanner("error", {
      title: "This post is gone, or you are no longer a member of its artist's team.",
      yourText: context.yourText,
      label: context.label,
    });
  } else if (answer.kind === "forbidden") {
    showBanner("error", { title: answer.data.error || "You may not do this.", yourText: context.yourText, label: context.label });
  } else if (answer.kind === "network") {
    showBanner("error", {
      title: "Could not reach the server: check the connection and try again.",
      yourText: context.yourText,
      label: context.label,
    });
  } else if (answer.kind === "server") {
    showBanner("error", {
      title: `The server failed (${answer.status}). Try again; if it keeps failing, tell ops.`,
      yourText: context.yourText,
      label: context.label,
    });
  }
}

// ------------------------------------------------------------------ page skeleton

const els = {};

function buildSkeleton() {
  els.face = h("img", { class: "face face-lg", alt: "", width: 72, height: 72 });
  els.artist = h("span", { class: "artist-name" });
  els.wardrobe = h("span", { class: "wardrobe" });
  els.title = h("h1", { class: "post-title" });
  els.status = h("span", { class: "badge" });
  els.duration = h("span", { class: "board-strip-facts" });
  els.edited = h("span", { class: "fact fact-quiet" });
  els.live = h("span", { class: "live", role: "status", "data-state": "connecting" },
    h("span", { class: "live-dot", "aria-hidden": "true" }), h("span", { class: "live-text", text: "Connecting…" }));
  els.saveState = h("span", { class: "save-state", "aria-live": "polite" });
  els.feedback = h("div", { class: "feedback", hidden: true },
    h("strong", { text: "Reviewer feedback" }), h("p", { class: "feedback-text" }));
  els.actions = h("div", { class: "actions" });
  els.feedbackText = h("textarea", { name: "feedback", rows: 3, required: true,
    placeholder: "What should change? The rewrite starts from this." });
  els.feedbackForm = h("form", { class: "feedback-form", hidden: true, onsubmit: sendFeedbackAction },
    h("label", {}, h("span", { class: "feedback-label" }), els.feedbackText),
    h("div", { class: "row" },
      h("button", { type: "submit", class: "btn btn-danger feedback-send" }),
      h("button", { type: "button", class: "btn btn-quiet", text: "Cancel", onclick: closeFeedback })));
  // Production (rendering, done, failed): one panel with what is being made, the render's
  // progress, why it stopped (with the retry button), and the finished video.
  els.productionText = h("p", { class: "production-text", "aria-live": "polite" });
  els.meter = h("ol", { class: "shot-meter", "aria-hidden": "true" });
  els.meterText = h("span", { class: "step-note" });
  els.renderFill = h("span", { class: "render-fill" });
  els.renderBar = h("div", { class: "render-bar", role: "progressbar", "aria-label": "Render progress",
    "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": "0" }, els.renderFill);
  els.renderNote = h("span", { class: "step-note render-note" });
  els.shotsStep = h("div", { class: "step step-shots" },
    h("span", { class: "step-name", text: "Voices and pictures" }), els.meter, els.meterText);
  els.renderStep = h("div", { class: "step step-render" },
    h("span", { class: "step-name", text: "Render" }), els.renderBar, els.renderNote);
  els.failureText = h("p", { class: "failure-text" });
  els.failureButtons = h("div", { class: "failure-retry" });
  els.failureShot = h("button", { type: "button", class: "btn btn-quiet failure-shot", hidden: true, onclick: showFailedShot });
  els.failure = h("div", { class: "production-failure", role: "alert", hidden: true },
    h("span", { class: "failure-icon", "aria-hidden": "true", text: "!" }),
    h("div", { class: "failure-main" },
      h("strong", { class: "failure-title", text: "Production stopped" }),
      els.failureText,
      h("p", { class: "failure-hint", text: "Retry render resumes where it stopped: the voices and pictures already made are kept." })),
    h("div", { class: "failure-buttons" }, els.failureButtons, els.failureShot));
  els.video = h("div", { class: "final-video", hidden: true });
  els.production = h("section", { class: "production", "aria-label": "Production", hidden: true },
    h("div", { class: "production-head" },
      h("h2", { class: "production-title", text: "Production" }), els.productionText),
    els.failure,
    h("div", { class: "steps" }, els.shotsStep, els.renderStep),
    els.video);
  els.readonly = h("p", { class: "readonly-note", hidden: true });
  // The cost ledger (posts.costs): what this post cost so far, the artist's budget, and about what the
  // next action (approve / render, or a rewrite) will cost.
  els.costSpent = h("span", { class: "cost-spent" });
  els.costEstimate = h("span", { class: "cost-estimate" });
  els.budget = h("p", { class: "budget-note", role: "status", hidden: true });
  els.costs = h("section", { class: "costs", "aria-label": "Costs", hidden: true },
    h("div", { class: "cost-line" }, els.costSpent, els.costEstimate), els.budget);

  const head = h("section", { class: "post-head", "aria-label": "Post" },
    h("div", { class: "post-identity" },
      els.face,
      h("div", { class: "post-heading" },
        h("div", { class: "post-byline" }, els.artist, h("span", { class: "sep", "aria-hidden": "true", text: "·" }), els.wardrobe),
        els.title,
        h("div", { class: "post-facts" }, els.status, els.edited))),
    h("div", { class: "post-tools" },
      h("a", { class: "btn btn-quiet", href: cfg.adminUrl, text: "Open in admin" })),
    h("div", { class: "post-body" }, els.feedback, els.production, els.costs, els.actions, els.feedbackForm));

  // Stays in view while scrolling: whether the page is live, whether edits are saved, and any refusal.
  els.banners = h("div", { class: "banners" });
  const strip = h("div", { class: "board-strip" },
    h("div", { class: "board-strip-bar" },
      h("h2", { class: "board-strip-title" }, "Storyboard ", els.duration),
      h("div", { class: "board-strip-tools" }, els.saveState, els.live)),
    els.banners);
  els.shots = h("ol", { class: "shots", "aria-label": "Shots" });
  els.addButton = h("button", { type: "button", class: "btn btn-primary add-shot-open", text: "Add shot", onclick: openAddForm });
  els.addForm = buildAddForm();
  els.toasts = h("div", { class: "toasts", role: "status", "aria-live": "polite" });

  root.append(head, els.readonly, strip, els.shots, h("div", { class: "add-shot" }, els.addButton, els.addForm), els.toasts);
}

// ------------------------------------------------------------------ header

let drawnActions = "";
let drawnVideo = null;
let drawnFace = null;
let pendingAction = null;

function renderHeader() {
  const post = state.post;
  document.title = `${post.title} · MCN OS`;
  root.style.setProperty("--artist", post.artist.colour || "#64748b");
  root.dataset.version = String(post.version);
  root.dataset.status = post.status;
  if (drawnFace !== post.artist.face_url) {
    drawnFace = post.artist.face_url;
    els.face.hidden = !drawnFace;
    if (drawnFace) els.face.src = drawnFace;
  }
  els.artist.textContent = post.artist.name;
  els.wardrobe.textContent = post.wardrobe ? post.wardrobe.name : "No wardrobe";
  els.title.textContent = post.title;
  els.status.textContent = post.status_label;
  els.status.className = `badge badge-${post.status}`;
  const count = state.shots.length;
  els.duration.textContent = `${count} shot${count === 1 ? "" : "s"} · ${seconds(state.total_duration)}`;
  els.edited.textContent = post.updated_by ? `Last saved by ${post.updated_by}, ${when(post.updated_at)}` : `Saved ${when(post.updated_at)}`;

  els.feedback.hidden = !post.feedback;
  els.feedback.querySelector(".feedback-text").textContent = post.feedback || "";

  // A failed post's retry is the one thing to do next: it sits in the failure banner, not in the row.
  const retry = post.status === "failed" ? state.actions.find((a) => a.name === "rendering") : null;
  const actionsKey = JSON.stringify([state.actions, Boolean(retry)]);
  if (actionsKey !== drawnActions) {
    drawnActions = actionsKey;
    const button = (action, extra = "") => h("button", {
      type: "button",
      class: `btn ${action.needs_feedback ? "btn-danger" : ["review", "approved", "rendering"].includes(action.name) ? "btn-primary" : ""}${extra}`,
      "data-action": action.name,
      text: action.label,
      onclick: () => runAction(action),
    });
    els.actions.replaceChildren(...state.actions.filter((a) => a !== retry).map((a) => button(a)));
    els.failureButtons.replaceChildren(...(retry ? [button(retry, " btn-large")] : []));
    if (pendingAction && !state.actions.some((a) => a.name === pendingAction.name)) closeFeedback();
  }

  renderProduction(post);
  renderVideo(post);
  renderCosts();

  // What the user's role lets them do to the shots (posts.selectors.SHOT_PERMS): a reviewer reads,
  // approves and rejects; the server refuses the rest with a 403 anyway.
  const can = post.can || {};
  const mayEdit = editableFor(post);
  els.readonly.hidden = mayEdit;
  els.readonly.textContent = mayEdit ? "" : !can.change_shots
    ? "Your role reviews storyboards: you can read this one and decide on it, not edit it."
    : post.status === "done"
    ? "This post is done: its storyboard is final."
    : post.status === "rendering" ? "This post is in production: its storyboard is read-only until it is done or stops. Locks still work."
    : `This post is ${post.status_label.toLowerCase()}: its storyboard is read-only until it goes back to draft. Locks still work.`;
  els.addButton.hidden = !can.add_shots;
  els.addButton.disabled = !post.editable || !can.add_shots;
  if (els.addButton.disabled) els.addForm.hidden = true;
}

const ESTIMATE_LABELS = { produce: "Approve / render", generate: "A rewrite" };

function renderCosts() {
  const costs = state.costs;
  els.costs.hidden = !costs;
  if (!costs) return;
  const spent = costs.spent;
  els.costSpent.textContent = `Cost so far: ${costs.spent_display}` +
    ` (GPU ${spent.currency} ${spent.gpu} · LLM ${spent.currency} ${spent.llm}${Number(spent.cpu) ? ` · CPU ${spent.currency} ${spent.cpu}` : ""})`;
  const estimate = costs.estimate;
  els.costEstimate.hidden = !(estimate && estimate.display);
  if (estimate && estimate.display) {
    const basis = estimate.known ? "from past jobs" : "partly unknown: no history or price yet";
    els.costEstimate.textContent = `${ESTIMATE_LABELS[estimate.action] || "Next"}: ${estimate.display} (${basis})`;
    els.costEstimate.title = (estimate.lines || []).map((l) =>
      `${l.count} × ${l.step}${l.template ? ` (${l.template})` : ""}: about ${estimate.currency} ${l.each} each, ${l.basis}`).join("\n");
  }
  const budget = costs.budget || {};
  els.budget.hidden = !budget.message;
  els.budget.textContent = budget.message || "";
  els.budget.dataset.state = budget.state || "none";
}

// Whether this user may edit the storyboard now: the post's status allows it and so does their role.
function editableFor(post) {
  return Boolean(post.editable && post.can && post.can.change_shots);
}

function runAction(action) {
  if (action.needs_feedback) {
    pendingAction = action;
    els.feedbackForm.hidden = false;
    els.feedbackForm.querySelector(".feedback-label").textContent = `${action.label}: what should change?`;
    els.feedbackForm.querySelector(".feedback-send").textContent = action.label.replace(/ with feedback$/, "");
    els.feedbackText.focus();
    return;
  }
  enqueue(() => write("POST", `actions/${action.name}`, { version: state.post.version }, { label: action.label }));
}

function sendFeedbackAction(event) {
  event.preventDefault();
  const action = pendingAction;
  const feedback = els.feedbackText.value.trim();
  if (!action || !feedback) {
    els.feedbackText.focus();
    return;
  }
  enqueue(async () => {
    const answer = await write("POST", `actions/${action.name}`, { version: state.post.version, feedback },
      { yourText: feedback, label: "your feedback" });
    if (answer.kind === "ok") {
      els.feedbackText.value = "";
      closeFeedback();
    }
  });
}

function closeFeedback() {
  pendingAction = null;
  els.feedbackForm.hidden = true;
}

// ------------------------------------------------------------------ shot cards

function buildCard(id) {
  const key = (field) => `${id}:${field}`;
  const card = { id };
  const fieldError = () => h("span", { class: "field-error", role: "alert" });
  card.errors = { kind: fieldError(), duration: fieldError(), script: fieldError(), visual_prompt: fieldError(), asset: fieldError(), card: fieldError() };

  card.kind = h("select", { name: "kind" }, state.shot_kinds.map((k) => h("option", { value: k.value, text: k.label })));
  card.duration = h("input", { type: "number", name: "duration", min: "0.1", max: "60", step: "0.1", inputmode: "decimal" });
  card.script = h("textarea", { name: "script", rows: 2, placeholder: "What the artist says" });
  card.prompt = h("textarea", { name: "visual_prompt", rows: 2, placeholder: "What the picture shows" });
  for (const [field, el] of [["kind", card.kind], ["duration", card.duration], ["script", card.script], ["visual_prompt", card.prompt]]) {
    wireField(id, field, el, key(field));
  }

  card.pos = h("span", { class: "shot-pos" });
  card.handle = h("span", { class: "drag-handle", draggable: "true", title: "Drag to reorder", "aria-hidden": "true", text: "⠿" });
  card.up = h("button", { type: "button", class: "icon-btn move-up", text: "↑", onclick: () => move(id, -1) });
  card.down = h("button", { type: "button", class: "icon-btn move-down", text: "↓", onclick: () => move(id, +1) });
  card.lock = h("button", { type: "button", class: "lock-toggle", onclick: () => toggleLock(id) });
  card.remove = h("button", { type: "button", class: "btn btn-quiet btn-small delete-shot", text: "Delete", onclick: () => deleteShot(id) });
  card.file = h("input", { type: "file", accept: "image/*,video/*", class: "visually-hidden", onchange: () => upload(id) });
  card.uploadText = h("span");
  card.upload = h("label", { class: "btn btn-small upload" }, card.uploadText, card.file);
  card.removeAsset = h("button", { type: "button", class: "btn btn-quiet btn-small remove-asset", text: "Remove", onclick: () => removeAsset(id) });
  card.preview = h("div", { class: "preview" });
  card.assetTag = h("span", { class: "asset-tag" });
  card.statusChip = h("span", { class: "shot-status" });
  card.bar = h("progress", { class: "job-bar", max: "100", value: "0" });
  card.node = h("span", { class: "job-node" });
  card.jobError = h("p", { class: "job-error", role: "alert" });
  card.generate = h("button", { type: "button", class: "btn btn-primary btn-small generate", text: "Generate picture", onclick: () => generate(id) });
  card.genHint = h("span", { class: "gen-hint" });
  // A locked shot keeps its voice whatever changes (issue 17): a new take is asked for here, by hand.
  card.revoice = h("button", { type: "button", class: "btn btn-small revoice", text: "New voice", onclick: () => revoice(id) });
  card.cost = h("span", { class: "shot-cost" });
  card.drawnAsset = undefined;
  // The shot's voice: a player once it is in, a spinner while the voice server speaks it.
  card.voiceSpin = h("span", { class: "spinner", "aria-hidden": "true" });
  card.voiceState = h("span", { class: "voice-state" });
  card.voicePlayer = h("span", { class: "voice-player" });
  card.voice = h("div", { class: "voice", hidden: true }, micIcon(), card.voiceSpin, card.voiceState, card.voicePlayer);
  card.drawnVoice = undefined;
  // The shot's clip (a video workflow: the artist speaking, or the still moving), made after the voice and picture.
  card.clipSpin = h("span", { class: "spinner", "aria-hidden": "true" });
  card.clipState = h("span", { class: "clip-state" });
  card.clipBar = h("progress", { class: "clip-bar", max: "100", value: "0" });
  card.clipLink = h("a", { class: "clip-link", target: "_blank", rel: "noopener", text: "▶ Clip" });
  card.clip = h("div", { class: "clip", hidden: true }, card.clipSpin, card.clipState, card.clipLink, card.clipBar);
  // How each produced asset was made (its job's provenance), folded away: a compact line per asset.
  card.howList = h("ul", { class: "provenance-list" });
  card.how = h("details", { class: "provenance", hidden: true }, h("summary", { text: "How it was made" }), card.howList);
  card.drawnHow = undefined;

  card.root = h("li", { class: "shot-card", "data-shot-id": String(id) },
    h("div", { class: "shot-rail" }, card.handle, card.pos, card.up, card.down),
    h("div", { class: "shot-fields" },
      h("div", { class: "shot-row" },
        h("label", { class: "inline" }, h("span", { text: "Kind" }), card.kind),
        h("label", { class: "inline" }, h("span", { text: "Duration (s)" }), card.duration),
        card.lock, card.remove),
      h("div", { class: "row-errors" }, card.errors.kind, card.errors.duration),
      h("label", { class: "field" }, h("span", { text: "Script" }), card.script, card.errors.script),
      h("label", { class: "field" }, h("span", { text: "Visual prompt" }), card.prompt, card.errors.visual_prompt),
      card.errors.card),
    h("div", { class: "shot-media" },
      h("div", { class: "preview-frame" }, card.preview, card.assetTag),
      h("div", { class: "asset-controls" }, card.upload, card.removeAsset),
      card.errors.asset,
      h("div", { class: "job" },
        h("div", { class: "job-line" }, card.statusChip, card.node),
        card.bar, card.jobError),
      card.voice,
      card.clip,
      card.how,
      h("div", { class: "gen-line" }, card.generate, card.revoice, card.genHint),
      card.cost));

  // HTML5 drag and drop: dragging starts on the handle only, any card is a drop target.
  card.handle.addEventListener("dragstart", (event) => {
    if (!editableFor(state.post)) {
      event.preventDefault();
      return;
    }
    event.dataTransfer.effectAllowed = "move";
    event.dataTransfer.setData("text/x-shot-id", String(id));
    event.dataTransfer.setData("text/plain", String(id));
    event.dataTransfer.setDragImage(card.root, 24, 24);
    dragging = id;
    card.root.classList.add("dragging");
  });
  card.handle.addEventListener("dragend", () => {
    dragging = null;
    card.root.classList.remove("dragging");
    clearDropMarks();
  });
  card.root.addEventListener("dragover", (event) => {
    if (dragging === null || dragging === id) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "move";
    const after = dropAfter(card.root, event);
    clearDropMarks();
    card.root.classList.add(after ? "drop-after" : "drop-before");
  });
  card.root.addEventListener("dragleave", (event) => {
    if (!card.root.contains(event.relatedTarget)) card.root.classList.remove("drop-before", "drop-after");
  });
  card.root.addEventListener("drop", (event) => {
    if (dragging === null || dragging === id) return;
    event.preventDefault();
    const moved = dragging;
    const after = dropAfter(card.root, event);
    clearDropMarks();
    const order = state.shots.map((s) => s.id).filter((sid) => sid !== moved);
    order.splice(order.indexOf(id) + (after ? 1 : 0), 0, moved);
    reorder(order);
  });
  return card;
}

let dragging = null;

function dropAfter(target, event) {
  const box = target.getBoundingClientRect();
  return event.clientY > box.top + box.height / 2;
}

function clearDropMarks() {
  for (const card of cards.values()) card.root.classList.remove("drop-before", "drop-after");
}

function wireField(id, field, el, key) {
  el.addEventListener("focus", () => {
    if (rendering || edits.has(key)) return;
    const shot = shotById(id);
    if (shot) edits.set(key, { version: state.post.version, value: fieldValue(shot, field) });
  });
  el.addEventListener("input", () => {
    held.add(key);
    root.dataset.unsaved = String(held.size);
  });
  const commit = () => {
    if (!rendering) saveField(id, field, el, key);
  };
  el.addEventListener("change", commit);
  el.addEventListener("blur", commit);
}

function saveField(id, field, el, key) {
  if (!held.has(key)) {
    if (document.activeElement !== el) edits.delete(key);
    return;
  }
  const text = el.value;
  if (sending.get(key) === text) return;
  const shot = shotById(id);
  if (shot && sameValue(field, text, fieldValue(shot, field))) {
    forget(key, el); // typed back to what the server has: nothing to save
    return;
  }
  sending.set(key, text);
  const label = `shot ${shot ? shot.position : "?"}, ${FIELD_NAMES[field]}`;
  enqueue(async () => {
    const current = shotById(id);
    if (!current) {
      showBanner("error", { title: "This shot was deleted by someone else, so your edit could not be saved.", yourText: text, label });
      forget(key);
      return;
    }
    const base = edits.get(key);
    // Somebody changed this very field while you typed: send the version you started from,
    // so the server refuses the save (409) instead of overwriting their words with yours.
    const theyChangedIt = base && !sameValue(field, base.value, fieldValue(current, field));
    const version = theyChangedIt ? base.version : state.post.version;
    const answer = await write("POST", `shots/${id}`, { version, [field]: text }, { shotId: id, field, yourText: text, label });
    sending.delete(key);
    if (answer.kind === "ok") {
      cards.get(id)?.errors[field] && (cards.get(id).errors[field].textContent = "");
      if (el.value === text) forget(key, el);
      else edits.set(key, { version: state.post.version, value: text }); // typed on meanwhile: that text is based on ours
      if (document.activeElement !== el) render();
    }
  });
}

function forget(key, el) {
  held.delete(key);
  sending.delete(key);
  root.dataset.unsaved = String(held.size);
  if (el && document.activeElement === el) {
    const [id, field] = key.split(":");
    const shot = shotById(Number(id));
    if (shot) edits.set(key, { version: state.post.version, value: fieldValue(shot, field) });
  } else {
    edits.delete(key);
  }
}

function setField(el, value, key) {
  if (document.activeElement === el || held.has(key)) return;
  if (el.value !== value) el.value = value;
}

function renderShots() {
  const editable = editableFor(state.post);
  const ids = new Set(state.shots.map((s) => s.id));
  for (const [id, card] of cards) {
    if (ids.has(id)) continue;
    const lost = [...held].filter((key) => key.startsWith(`${id}:`));
    for (const key of lost) {
      const el = card.root.querySelector(`[name="${key.split(":")[1]}"]`);
      showBanner("error", { title: "Someone deleted a shot you were editing.", yourText: el?.value, label: `deleted shot, ${FIELD_NAMES[key.split(":")[1]]}` });
      forget(key);
    }
    card.root.remove();
    cards.delete(id);
  }
  const last = state.shots.length - 1;
  state.shots.forEach((shot, index) => {
    let card = cards.get(shot.id);
    if (!card) {
      card = buildCard(shot.id);
      cards.set(shot.id, card);
    }
    const at = els.shots.children[index];
    if (at !== card.root) els.shots.insertBefore(card.root, at || null);
    updateCard(card, shot, index, last, editable);
  });
  els.shots.classList.toggle("is-empty", state.shots.length === 0);
}

function updateCard(card, shot, index, last, editable) {
  const n = shot.position;
  const frozen = shot.locked || !editable;
  card.root.classList.toggle("is-locked", shot.locked);
  card.root.dataset.position = String(n);
  card.root.dataset.kind = shot.kind;
  card.root.setAttribute("aria-label", `Shot ${n}`);
  card.pos.textContent = String(n);
  card.handle.draggable = editable;
  card.handle.classList.toggle("is-disabled", !editable);
  card.up.disabled = !editable || index === 0;
  card.down.disabled = !editable || index === last;
  card.up.setAttribute("aria-label", `Move shot ${n} up`);
  card.down.setAttribute("aria-label", `Move shot ${n} down`);

  setField(card.kind, shot.kind, `${shot.id}:kind`);
  setField(card.duration, String(shot.duration), `${shot.id}:duration`);
  setField(card.script, shot.script, `${shot.id}:script`);
  setField(card.prompt, shot.visual_prompt, `${shot.id}:visual_prompt`);
  card.kind.disabled = frozen;
  card.duration.readOnly = frozen;
  card.script.readOnly = frozen;
  card.prompt.readOnly = frozen;
  // Dim the field this kind of shot does not need (B-roll has no words, A-roll no picture prompt).
  card.script.closest(".field").classList.toggle("is-secondary", shot.kind !== "a_roll" && !shot.script);
  card.prompt.closest(".field").classList.toggle("is-secondary", shot.kind === "a_roll" && !shot.visual_prompt);

  card.lock.replaceChildren(lockIcon(shot.locked), shot.locked ? "Locked" : "Lock");
  card.lock.setAttribute("aria-pressed", String(shot.locked));
  card.lock.setAttribute("aria-label", shot.locked ? `Unlock shot ${n}` : `Lock shot ${n}`);
  card.lock.title = shot.locked ? "Locked shots are never regenerated or edited. Click to unlock." : "Lock to protect this shot from edits and AI regeneration.";
  card.remove.disabled = frozen || !state.post.can?.delete_shots;
  card.remove.hidden = !state.post.can?.delete_shots;
  // Locks work in any status, for whoever may edit shots.
  card.lock.disabled = !state.post.can?.change_shots;
  card.remove.setAttribute("aria-label", `Delete shot ${n}`);

  // Manual asset: upload, replace, remove.
  card.uploadText.textContent = shot.manual_asset ? "Replace asset" : "Upload asset";
  card.file.disabled = frozen;
  card.upload.classList.toggle("is-disabled", frozen);
  card.file.setAttribute("aria-label", `${shot.manual_asset ? "Replace" : "Upload"} the picture or video of shot ${n}`);
  card.removeAsset.hidden = !shot.manual_asset;
  card.removeAsset.disabled = frozen;
  card.removeAsset.setAttribute("aria-label", `Remove the manual asset of shot ${n}`);

  const producing = shot.job && (shot.job.status === "queued" || shot.job.status === "running");
  const asset = shot.manual_asset || shot.generated_asset;
  // Redraw the preview only when it changes: a new <video> would restart playback.
  const assetKey = asset ? `${asset.type}:${asset.url}` : `none:${Boolean(producing)}`;
  if (assetKey !== card.drawnAsset) {
    card.drawnAsset = assetKey;
    card.preview.replaceChildren(asset ? assetElement(asset, n) :
      h("span", { class: `no-asset${producing ? " is-producing" : ""}`, text: producing ? "Producing…" : "No picture yet" }));
  }
  card.assetTag.hidden = !asset;
  card.assetTag.textContent = shot.manual_asset ? "Manual" : "Generated";

  updateJob(card, shot);
  updateVoice(card, shot);
  updateClip(card, shot);
  updateProvenance(card, shot);
  const cost = state.costs && state.costs.shots[String(shot.id)];
  card.cost.hidden = !cost;
  card.cost.textContent = cost ? `Cost so far: ${state.costs.spent.currency} ${cost}` : "";

  card.generate.textContent = producing ? "Generating…" : "Generate picture";
  card.generate.disabled = frozen || Boolean(shot.manual_asset) || producing;
  card.generate.setAttribute("aria-label", `Generate the picture of shot ${n}`);
  card.genHint.textContent = !editable ? "" : shot.locked ? "Locked: unlock to generate" :
    shot.manual_asset ? "Uses the manual asset" : producing ? "" : shot.generated_asset ? "Makes a new picture" : "";

  const speaking = running(shot.voice_job);
  card.revoice.disabled = !editable || speaking;
  card.revoice.textContent = speaking ? "Speaking…" : "New voice";
  card.revoice.setAttribute("aria-label", `New take of shot ${n}'s voice`);
  card.revoice.title = "A locked shot keeps its voice when the artist's voice changes: this makes a new take now.";

  // A role that may not edit shots (a reviewer) gets no edit controls at all, only the content.
  const reader = !state.post.can?.change_shots;
  for (const el of [card.handle, card.up, card.down, card.lock, card.upload, card.generate]) el.hidden = reader;
  card.revoice.hidden = reader || !shot.locked || !shot.voice;
  if (reader) card.removeAsset.hidden = true;
}

// 🔒 / 🔓 drawn as SVG: emoji fonts are missing on many Linux desktops.
const LOCK_SVG = {
  true: '<svg viewBox="0 0 16 16" width="13" height="13" aria-hidden="true"><rect x="2.5" y="7" width="11" height="7.5" rx="1.6" fill="currentColor"/><path d="M5 7V5a3 3 0 0 1 6 0v2" fill="none" stroke="currentColor" stroke-width="1.7"/></svg>',
  false: '<svg viewBox="0 0 16 16" width="13" height="13" aria-hidden="true"><rect x="2.5" y="7" width="11" height="7.5" rx="1.6" fill="currentColor"/><path d="M5 7V5a3 3 0 0 1 5.9-.8" fill="none" stroke="currentColor" stroke-width="1.7"/></svg>',
};

// 🎙 drawn as SVG, for the same reason.
const MIC_SVG = '<svg viewBox="0 0 16 16" width="14" height="14" aria-hidden="true"><rect x="5.25" y="1.5" width="5.5" height="8.5" rx="2.75" fill="currentColor"/><path d="M3 7.5a5 5 0 0 0 10 0M8 12.5v2.5M5.5 15h5" fill="none" stroke="currentColor" stroke-width="1.5" stroke-linecap="round"/></svg>';

function micIcon() {
  const span = h("span", { class: "voice-icon", title: "Voice" });
  span.innerHTML = MIC_SVG; // a constant above, never data
  return span;
}

function lockIcon(locked) {
  const span = h("span", { class: "lock-icon" });
  span.innerHTML = LOCK_SVG[locked]; // a constant above, never data
  return span;
}

function assetElement(asset, n) {
  if (asset.type === "video") {
    return h("video", { src: asset.url, controls: true, muted: true, preload: "metadata", "aria-label": `Video of shot ${n}` });
  }
  return h("img", { src: asset.url, alt: `Picture of shot ${n}`, loading: "lazy" });
}

// ------------------------------------------------------------------ production

const PRODUCTION_STATUSES = ["rendering", "done", "failed"];

function running(job) {
  return Boolean(job) && (job.status === "queued" || job.status === "running");
}

function finished(job) {
  return Boolean(job) && ["succeeded", "failed", "cancelled"].includes(job.status);
}

function renderProduction(post) {
  const shown = PRODUCTION_STATUSES.includes(post.status);
  els.production.hidden = !shown;
  if (!shown) return;
  const failed = post.status === "failed";
  const done = post.status === "done";
  els.production.dataset.state = post.status;

  // Why it stopped, and the way on: the shot to look at and the retry (drawn with the actions).
  const broken = state.shots.find((s) => s.error);
  els.failure.hidden = !failed;
  els.failureText.textContent = failed ? post.failure || "Production stopped without saying why. Retry, or tell ops." : "";
  els.failureShot.hidden = !failed || !broken;
  if (broken) {
    els.failureShot.textContent = `Show shot ${broken.position}`;
    els.failureShot.dataset.shotId = String(broken.id);
  }

  // Step 1: every shot's voice and picture.
  const total = state.shots.length;
  const ready = state.shots.filter((s) => s.status === "ready").length;
  const failing = state.shots.filter((s) => s.status === "failed").length;
  els.meter.replaceChildren(...state.shots.map((s) =>
    h("li", { class: `seg seg-${s.status}`, title: `Shot ${s.position}: ${SHOT_STATUS[s.status] || s.status}` })));
  els.meterText.textContent = `${ready} of ${total} ready${failing ? ` · ${failing} failed` : ""}`;
  els.shotsStep.dataset.state = failing ? "failed" : ready === total ? "done" : "active";

  // Step 2: the render (ffmpeg on a CPU worker), live from job.progress.
  const render = post.render_job;
  let percent = 0;
  let note = failed ? "Not started" : "Starts when every shot is ready";
  let step = "waiting";
  if (done || render?.status === "succeeded") {
    [percent, note, step] = [100, "Done", "done"];
  } else if (render?.status === "queued") {
    [note, step] = ["Waiting for a worker…", "active"];
  } else if (render?.status === "running") {
    percent = Math.round(render.percent || 0);
    [note, step] = [`${percent}%${render.node ? ` · ${render.node}` : ""}`, "active"];
  } else if (finished(render)) {
    percent = Math.round(render.percent || 0);
    [note, step] = [render.status === "cancelled" ? "Cancelled" : "Failed", "failed"];
  }
  els.renderFill.style.width = `${percent}%`;
  els.renderBar.setAttribute("aria-valuenow", String(percent));
  els.renderBar.setAttribute("aria-valuetext", `${percent}%`);
  els.renderNote.textContent = note;
  els.renderStep.dataset.state = step;

  // One sentence for everyone, screen readers included (aria-live): it changes per phase, not per percent.
  let text;
  if (done) text = post.final_video ? "Done: the video is ready." : "Done.";
  else if (failed) text = broken ? `Stopped at shot ${broken.position}.` : "Stopped.";
  else if (render?.status === "running") text = "Rendering the video…";
  else if (render?.status === "queued") text = "Waiting for a worker to render the video…";
  else text = `Producing: ${ready} of ${total} shot${total === 1 ? "" : "s"} ready`;
  if (els.productionText.textContent !== text) els.productionText.textContent = text;
}

function showFailedShot() {
  const card = cards.get(Number(els.failureShot.dataset.shotId));
  if (!card) return;
  card.root.scrollIntoView({ block: "center", behavior: "smooth" });
  card.root.classList.remove("is-flagged");
  void card.root.offsetWidth; // restart the highlight when pressed twice
  card.root.classList.add("is-flagged");
  card.jobError.setAttribute("tabindex", "-1");
  card.jobError.focus({ preventScroll: true });
}

function renderVideo(post) {
  const video = post.final_video;
  els.video.hidden = !video;
  els.video.dataset.aspect = post.aspect_ratio || "9:16";
  // Redraw the player only when its file changes: a new <video> would stop playback.
  const url = video ? video.url : null;
  if (url !== drawnVideo) {
    drawnVideo = url;
    els.finalFacts = h("p", { class: "final-facts" });
    els.video.replaceChildren(...(video ? [
      h("video", { src: url, controls: true, preload: "metadata", class: "final-player", "aria-label": "Final video" }),
      h("div", { class: "final-meta" },
        h("h3", { class: "final-title", text: "Final video" }),
        els.finalFacts,
        // The media view names the file (Content-Disposition), so `download` only asks to save it.
        h("a", { class: "btn btn-primary download", href: url, download: true, text: "Download MP4" }))] : []));
  }
  if (video) els.finalFacts.textContent = `${post.aspect_ratio} · ${seconds(state.total_duration)} · ${video.name}`;
}

function updateJob(card, shot) {
  const job = shot.job;
  card.root.dataset.status = shot.status;
  card.statusChip.textContent = SHOT_STATUS[shot.status] || shot.status;
  card.statusChip.className = `shot-status status-${shot.status}`;
  const active = job && (job.status === "queued" || job.status === "running");
  card.bar.hidden = !active;
  card.node.hidden = !active;
  if (active) {
    card.bar.value = job.status === "queued" ? 0 : job.percent || 0;
    card.bar.setAttribute("aria-label", `Shot ${shot.position} progress`);
    card.node.textContent = job.status === "queued" ? "Waiting for a GPU…" :
      job.node ? `Node ${job.node} · ${Math.round(job.percent || 0)}%` : "Starting…";
  }
  const failed = shot.status === "failed" && job && (job.status === "failed" || job.status === "cancelled");
  // A production error names what failed (voice or picture); else the picture job's own message.
  const message = shot.error || (failed ? (job.error_message || "The picture could not be made. Try again, or tell ops.") : "");
  card.jobError.hidden = !message;
  card.jobError.textContent = message;
}

const CLIP_STEP = { avatar: "Clip (speaking)", motion: "Clip (motion)" };

function updateClip(card, shot) {
  const job = shot.clip_job;
  const making = running(job);
  const failed = !making && !shot.clip && finished(job) && job.status !== "succeeded";
  const label = CLIP_STEP[shot.clip_step] || "Clip";
  card.clip.hidden = !shot.clip && !making && !failed;
  card.clip.dataset.state = making ? "making" : shot.clip ? "ready" : failed ? "failed" : "none";
  card.clipSpin.hidden = !making;
  card.clipBar.hidden = !making;
  card.clipBar.value = making && job.status !== "queued" ? job.percent || 0 : 0;
  card.clipBar.setAttribute("aria-label", `Shot ${shot.position} clip progress`);
  // A video model reports its sampler's steps: "Node 12 · 40%" is the window being sampled.
  card.clipState.textContent = making
    ? job.status === "queued" ? `${label}: waiting for a GPU…`
      : job.node ? `${label} · node ${job.node} · ${Math.round(job.percent || 0)}%` : `${label}: starting…`
    : failed ? `${label} failed` : "";
  card.clipState.hidden = !card.clipState.textContent;
  card.clipLink.hidden = !shot.clip || making;
  if (shot.clip) card.clipLink.href = shot.clip.url;
}

function updateVoice(card, shot) {
  const job = shot.voice_job;
  const making = running(job);
  const failed = !making && !shot.voice && finished(job) && job.status !== "succeeded";
  const url = shot.voice && !making ? shot.voice.url : null;
  card.voice.hidden = !url && !making && !failed;
  card.voice.dataset.state = making ? "making" : url ? "ready" : failed ? "failed" : "none";
  card.voiceSpin.hidden = !making;
  card.voiceState.textContent = making
    ? job.status === "queued" ? "Voice: waiting for the voice server…"
      : job.percent ? `Voice · ${Math.round(job.percent)}%` : "Voice: speaking…"
    : failed ? "Voice failed" : "";
  card.voiceState.hidden = !card.voiceState.textContent;
  // Redraw the player only when its file changes: a new <audio> would stop playback.
  const key = url ? `${url}|${shot.position}` : null;
  if (key !== card.drawnVoice) {
    card.drawnVoice = key;
    card.voicePlayer.replaceChildren(...(url ? [h("audio", { src: url, controls: true, preload: "none", class: "voice-audio",
      "aria-label": `Voice of shot ${shot.position}` })] : []));
  }
  card.voicePlayer.hidden = !url;
}

const PROVENANCE_STEPS = [["picture", "Picture"], ["voice", "Voice"], ["clip", "Clip"]];

// One line per asset: "Picture: portrait v3 #9f2c41d0 · seed 42 · qwen.safetensors, … · ComfyUI 0.3.64 · job 12".
function provenanceLine(label, made) {
  const parts = [];
  if (made.template) {
    parts.push(`${made.template.name} v${made.template.version} #${made.template.sha256.slice(0, 8)}`);
    if (made.seed !== null && made.seed !== undefined) parts.push(`seed ${made.seed}`);
    if (made.models && made.models.length) parts.push(made.models.join(", "));
    if (made.comfyui_version) parts.push(`ComfyUI ${made.comfyui_version}`);
  }
  if (made.tts) {
    parts.push(made.tts.model || "TTS model not named");
    const voice = made.tts.voice || "";
    parts.push(voice.startsWith("sample ") ? `cloned from sample #${voice.slice(7, 15)}` : `speaker ${voice}`);
  }
  parts.push(`job ${made.job}`);
  return h("li", { title: made.template ? `template sha256 ${made.template.sha256}` : null },
    h("span", { class: "provenance-step", text: `${label}: ` }), parts.join(" · "));
}

function updateProvenance(card, shot) {
  const made = shot.provenance || {};
  const lines = PROVENANCE_STEPS.filter(([step]) => made[step]).map(([step, label]) => provenanceLine(label, made[step]));
  // Redraw only when it changes: an open disclosure stays open across state refreshes.
  const key = JSON.stringify(made);
  if (key !== card.drawnHow) {
    card.drawnHow = key;
    card.howList.replaceChildren(...lines);
  }
  card.how.hidden = lines.length === 0;
  card.how.setAttribute("aria-label", `How the assets of shot ${shot.position} were made`);
}

// ------------------------------------------------------------------ shot actions

function move(id, step) {
  const order = state.shots.map((s) => s.id);
  const from = order.indexOf(id);
  const to = from + step;
  if (from < 0 || to < 0 || to >= order.length) return;
  [order[from], order[to]] = [order[to], order[from]];
  reorder(order);
}

function reorder(order) {
  enqueue(() => write("POST", "shots/reorder", { version: state.post.version, order }, { label: "new order" }));
}

function toggleLock(id) {
  enqueue(() => {
    const shot = shotById(id);
    if (!shot) return null;
    return write("POST", `shots/${id}/lock`, { version: state.post.version, locked: !shot.locked }, { shotId: id });
  });
}

function deleteShot(id) {
  const shot = shotById(id);
  if (!shot) return;
  if (!window.confirm(`Delete shot ${shot.position}? This cannot be undone.`)) return;
  enqueue(() => write("POST", `shots/${id}/delete`, { version: state.post.version }, { shotId: id }));
}

function upload(id) {
  const card = cards.get(id);
  const file = card.file.files[0];
  if (!file) return;
  enqueue(async () => {
    const form = new FormData();
    form.append("version", String(state.post.version));
    form.append("file", file);
    await write("POST", `shots/${id}/asset`, form, { shotId: id, field: "asset", label: file.name });
    card.file.value = "";
  });
}

function removeAsset(id) {
  enqueue(() => {
    const form = new FormData();
    form.append("version", String(state.post.version));
    form.append("remove", "1");
    return write("POST", `shots/${id}/asset`, form, { shotId: id, field: "asset" });
  });
}

function generate(id) {
  const card = cards.get(id);
  card.generate.disabled = true;
  enqueue(() => write("POST", `shots/${id}/generate`, { version: state.post.version }, { shotId: id })).finally(() => {
    const shot = shotById(id);
    if (shot) updateCard(card, shot, state.shots.indexOf(shot), state.shots.length - 1, editableFor(state.post));
  });
}

function revoice(id) {
  const card = cards.get(id);
  card.revoice.disabled = true;
  enqueue(() => write("POST", `shots/${id}/revoice`, { version: state.post.version }, { shotId: id })).finally(() => {
    const shot = shotById(id);
    if (shot) updateCard(card, shot, state.shots.indexOf(shot), state.shots.length - 1, editableFor(state.post));
  });
}

// ------------------------------------------------------------------ add shot

function buildAddForm() {
  const kind = h("select", { name: "kind" }, state.shot_kinds.map((k) => h("option", { value: k.value, text: k.label })));
  const errors = { kind: h("span", { class: "field-error" }), duration: h("span", { class: "field-error" }),
    script: h("span", { class: "field-error" }), visual_prompt: h("span", { class: "field-error" }), form: h("span", { class: "field-error" }) };
  const form = h("form", { class: "add-form", hidden: true, "aria-label": "New shot" },
    h("h2", { text: "New shot" }),
    h("div", { class: "shot-row" },
      h("label", { class: "inline" }, h("span", { text: "Kind" }), kind),
      h("label", { class: "inline" }, h("span", { text: "Duration (s)" }),
        h("input", { type: "number", name: "duration", min: "0.1", max: "60", step: "0.1", value: "3" })),
      errors.kind, errors.duration),
    h("label", { class: "field" }, h("span", { text: "Script" }), h("textarea", { name: "script", rows: 2, placeholder: "What the artist says (needed for A-roll)" }), errors.script),
    h("label", { class: "field" }, h("span", { text: "Visual prompt" }), h("textarea", { name: "visual_prompt", rows: 2, placeholder: "What the picture shows (needed for B-roll and product shots)" }), errors.visual_prompt),
    errors.form,
    h("div", { class: "row" },
      h("button", { type: "submit", class: "btn btn-primary", text: "Add this shot" }),
      h("button", { type: "button", class: "btn btn-quiet", text: "Cancel", onclick: () => { form.hidden = true; els.addButton.hidden = false; } })));
  form.errors = errors;
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = Object.fromEntries(new FormData(form));
    for (const span of Object.values(errors)) span.textContent = "";
    enqueue(async () => {
      const answer = await write("POST", "shots", { version: state.post.version, ...data }, { form, yourText: data.script || data.visual_prompt, label: "new shot" });
      if (answer.kind === "ok") {
        form.reset();
        form.hidden = true;
        els.addButton.hidden = false;
        const newest = state.shots[state.shots.length - 1];
        cards.get(newest?.id)?.root.scrollIntoView({ block: "nearest", behavior: "smooth" });
      }
    });
  });
  return form;
}

function openAddForm() {
  els.addForm.hidden = false;
  els.addButton.hidden = true;
  els.addForm.querySelector("select").focus();
}

// ------------------------------------------------------------------ banners, toasts, indicators

function showBanner(kind, { title, message, yourText, label, buttons = [] }) {
  let banner = els.banners.querySelector(`[data-kind="${kind}"]`);
  const texts = banner && kind === "conflict" ? banner.querySelector(".your-texts") : null;
  const fresh = h("div", { class: `banner banner-${kind}`, role: "alert", "data-kind": kind },
    h("div", { class: "banner-main" },
      h("strong", { class: "banner-title", text: title }),
      message ? h("p", { class: "banner-message", text: message }) : null,
      texts || h("div", { class: "your-texts" })),
    h("div", { class: "banner-buttons" },
      buttons.map((b) => h("button", { type: "button", class: `btn ${b.primary ? "btn-primary" : ""}`, text: b.text, onclick: b.onclick })),
      h("button", { type: "button", class: "btn btn-quiet", text: "Dismiss", onclick: () => fresh.remove() })));
  if (yourText) {
    fresh.querySelector(".your-texts").append(
      h("p", { class: "your-text" }, h("span", { class: "your-text-label", text: `Your text${label ? ` (${label})` : ""}: ` }),
        h("q", { class: "your-text-value", text: yourText }),
        h("button", { type: "button", class: "btn btn-quiet btn-small", text: "Copy", onclick: () => navigator.clipboard?.writeText(yourText) })));
  }
  if (banner) banner.replaceWith(fresh);
  else els.banners.append(fresh);
  return fresh;
}

function clearBanner(kind) {
  els.banners.querySelector(`[data-kind="${kind}"]`)?.remove();
}

function showConflict(serverMessage, context) {
  showBanner("conflict", {
    title: "Not saved: someone else saved this storyboard first.",
    message: serverMessage,
    yourText: context.yourText,
    label: context.label,
    buttons: [{ text: "Reload", primary: true, onclick: reloadAfterConflict }],
  });
}

function reloadAfterConflict() {
  // The producer has their text in the banner; now the fields show what the server has.
  held.clear();
  edits.clear();
  sending.clear();
  root.dataset.unsaved = "0";
  for (const card of cards.values()) for (const span of Object.values(card.errors)) span.textContent = "";
  clearBanner("conflict");
  refresh().then(() => render());
}

function showInvalid(data, context) {
  const fields = data.fields || {};
  const names = Object.keys(fields);
  let placed = false;
  if (context.form) {
    for (const [name, messages] of Object.entries(fields)) {
      const span = context.form.errors[SERVER_FIELDS[name] || name] || context.form.errors.form;
      span.textContent = messages.join(" ");
      placed = true;
    }
    if (!placed) context.form.errors.form.textContent = data.error;
    return;
  }
  const card = context.shotId ? cards.get(context.shotId) : null;
  if (card && names.length) {
    for (const [name, messages] of Object.entries(fields)) {
      const span = card.errors[SERVER_FIELDS[name] || name] || card.errors.card;
      span.textContent = messages.join(" ");
    }
    return;
  }
  showBanner("error", { title: data.error || "This change was refused.", yourText: context.yourText, label: context.label });
}

function toast(text) {
  const item = h("div", { class: "toast", text });
  els.toasts.append(item);
  setTimeout(() => item.remove(), TOAST_MS);
}

let saveTimer = null;

function setSaveState(what) {
  clearTimeout(saveTimer);
  if (what === "saving") els.saveState.textContent = "Saving…";
  else if (what === "failed") els.saveState.textContent = "Not saved";
  else if (what === "saved" && writesInFlight <= 1) {
    els.saveState.textContent = "All changes saved";
    saveTimer = setTimeout(() => { els.saveState.textContent = ""; }, 3000);
  }
  els.saveState.dataset.state = what;
}

const LIVE_TEXT = { connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…", offline: "Offline" };

function setLive(what) {
  els.live.dataset.state = what;
  els.live.querySelector(".live-text").textContent = LIVE_TEXT[what];
  root.dataset.live = what;
}

// ------------------------------------------------------------------ drawing

function render() {
  // Keep the producer's focus and caret: moving a card in the list would otherwise blur it.
  const active = document.activeElement;
  const caret = active && "selectionStart" in active && active.type !== "number" && active.type !== "file"
    ? [active.selectionStart, active.selectionEnd] : null;
  rendering = true;
  try {
    renderHeader();
    renderShots();
  } finally {
    rendering = false;
  }
  if (active && active !== document.body && active.isConnected && document.activeElement !== active) {
    if (active.disabled) {
      // A move button that just became disabled at the top/bottom: focus its twin instead.
      active.parentElement?.querySelector("button:not(:disabled)")?.focus({ preventScroll: true });
    } else {
      active.focus({ preventScroll: true });
      if (caret) active.setSelectionRange(caret[0], caret[1]);
    }
  }
}

// ------------------------------------------------------------------ live channel

let socket = null;
let attempt = 0;
let retryTimer = null;
let stopped = false;

function connect() {
  clearTimeout(retryTimer);
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${scheme}//${window.location.host}${cfg.wsPath}`);
  socket = ws;
  ws.addEventListener("message", (event) => {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      return;
    }
    onEvent(message);
  });
  ws.addEventListener("close", (event) => {
    if (socket !== ws) return;
    socket = null;
    if (event.code === 4401) {
      stopped = true;
      setLive("offline");
      reportFailure({ kind: "session" });
      return;
    }
    if (event.code === 4404) {
      stopped = true;
      setLive("offline");
      reportFailure({ kind: "gone" });
      return;
    }
    scheduleReconnect();
  });
}

function scheduleReconnect() {
  if (stopped) return;
  setLive(navigator.onLine === false ? "offline" : "reconnecting");
  // Exponential backoff with jitter, so a restarted server is not hit by every page at once.
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** attempt);
  const delay = base * (1 - BACKOFF_JITTER + Math.random() * 2 * BACKOFF_JITTER);
  attempt += 1;
  clearTimeout(retryTimer);
  retryTimer = setTimeout(connect, delay);
}

function onEvent(message) {
  switch (message.event) {
    case "hello":
      // Connected (first time or again): whatever we missed, the state endpoint has it.
      attempt = 0;
      setLive("live");
      refresh();
      break;
    case "post.changed": {
      const newer = message.version > state.post.version;
      const mine = message.by === cfg.me;
      if (newer || !mine) refresh();
      if (newer && message.by && !mine) {
        toast(message.kind === "status" ? `${message.by} changed the status` : `${message.by} edited the storyboard`);
      }
      break;
    }
    case "job.progress": {
      // Drawn in place from the push; a job this page has not seen yet means its state is old: re-read it.
      if (message.render) {
        const render = state.post.render_job;
        if (!render || render.id !== message.job_id) { refresh(); break; }
        if (finished(render)) break; // a late hint
        Object.assign(render, { status: message.status, percent: message.percent ?? render.percent, node: message.node || render.node });
        renderProduction(state.post);
        break;
      }
      if (message.shot_id === null || message.shot_id === undefined) break; // the director: job.finished re-reads
      const shot = shotById(message.shot_id);
      if (!shot) break; // deleted: its job may still report
      const card = cards.get(shot.id);
      if (shot.voice_job && shot.voice_job.id === message.job_id) {
        if (finished(shot.voice_job)) break; // a late hint
        Object.assign(shot.voice_job, { status: message.status, percent: message.percent ?? shot.voice_job.percent });
        if (card) updateVoice(card, shot);
        break; // the voice itself comes with job.finished, which re-reads the state
      }
      if (shot.clip_job && shot.clip_job.id === message.job_id) {
        if (finished(shot.clip_job)) break; // a late hint
        Object.assign(shot.clip_job, { status: message.status, percent: message.percent ?? shot.clip_job.percent, node: message.node ?? shot.clip_job.node });
        if (card) updateClip(card, shot);
        break; // the clip itself comes with job.finished, which re-reads the state
      }
      if (!shot.job || shot.job.id !== message.job_id) {
        refresh(); // a job this page has not seen yet (someone else pressed Generate, or production started it)
        break;
      }
      if (finished(shot.job)) break; // a late hint
      Object.assign(shot.job, { status: message.status, percent: message.percent ?? shot.job.percent, node: message.node ?? shot.job.node });
      shot.status = "producing";
      if (card) {
        updateJob(card, shot);
        card.generate.disabled = true;
      }
      break;
    }
    case "job.finished": // its cost is in the ledger by now (posts.costs runs before the pipeline's receiver)
      refresh();
      break;
    default:
      break;
  }
}

window.addEventListener("offline", () => {
  if (!socket || socket.readyState !== WebSocket.OPEN) setLive("offline");
});
window.addEventListener("online", () => {
  if (!stopped && !socket) {
    attempt = 0;
    connect();
  }
});
window.addEventListener("beforeunload", (event) => {
  if (held.size || writesInFlight) event.preventDefault();
});

buildSkeleton();
render();
connect();
