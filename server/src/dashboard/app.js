// Aftercase head-office dashboard: plain JavaScript against the relay's
// JSON API, no framework and no build step (see ARCHITECTURE.md).
//
// Rules this file keeps:
// - Data enters the page only as text (`textContent`, text nodes,
//   `setAttribute`); nothing from the API is ever parsed as HTML.
// - The token lives in sessionStorage and travels only in the
//   Authorization header; never in a URL, so it cannot leak through
//   history, logs or a Referer. CSV downloads are fetched with the header
//   and saved from a blob for the same reason.
// - Times are shown in the stores' time zone (policy utc_offset_minutes)
//   as 2026-11-25 13:00, never as raw UTC.
// - Kinds, states and deadlines are shown in Chinese with English beside
//   them, from GET /v1/labels (the same table the CLI prints).
'use strict';

const TOKEN_KEY = 'aftercase.token';
const PAGE = 50;

const app = {
  labels: null,
  offsetMinutes: 480,
  // null: not asked yet; true/false: GET /v1/queues/devices answered 200/404.
  devices: null,
  // Increases with every render, so a slow answer for a view the user has
  // left is dropped instead of drawn over the new one.
  renderSeq: 0,
};

// ---------------------------------------------------------------- DOM

const SVG_NS = 'http://www.w3.org/2000/svg';

function appendChildren(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function setAttributes(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') {
      el.addEventListener(k.slice(2), v);
    } else {
      el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  return el;
}

/** An HTML element; string children become text nodes. */
function h(tag, attrs, ...children) {
  return appendChildren(setAttributes(document.createElement(tag), attrs), children);
}

/** An SVG element; string children become text nodes. */
function svg(tag, attrs, ...children) {
  return appendChildren(setAttributes(document.createElementNS(SVG_NS, tag), attrs), children);
}

function byId(id) {
  return document.getElementById(id);
}

function setStatus(text) {
  byId('status').textContent = text;
}

// ---------------------------------------------------------------- time

function pad(n) {
  return String(n).padStart(2, '0');
}

/** The stores' zone as +08:00. */
function zone() {
  const m = app.offsetMinutes;
  const sign = m < 0 ? '-' : '+';
  const a = Math.abs(m);
  return `${sign}${pad(Math.floor(a / 60))}:${pad(a % 60)}`;
}

/** A time (RFC 3339 text or ms) as 2026-11-25 13:00 in the stores' zone. */
function fmtTime(v) {
  if (v === null || v === undefined || v === '') return '';
  const ms = typeof v === 'number' ? v : Date.parse(v);
  if (Number.isNaN(ms)) return String(v);
  const d = new Date(ms + app.offsetMinutes * 60000);
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ` +
    `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
}

/** Today's date (YYYY-MM-DD) in the stores' zone, moved by `days`. */
function localDate(days = 0) {
  const d = new Date(Date.now() + app.offsetMinutes * 60000 + days * 86400000);
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
}

/** The first day of this month in the stores' zone. */
function monthStart() {
  return `${localDate().slice(0, 8)}01`;
}

/** Midnight of a YYYY-MM-DD date in the stores' zone, as RFC 3339. */
function midnight(date) {
  return `${date}T00:00:00${zone()}`;
}

/** The day after a YYYY-MM-DD date. */
function nextDay(date) {
  const d = new Date(`${date}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + 1);
  return d.toISOString().slice(0, 10);
}

function isDate(v) {
  return /^\d{4}-\d{2}-\d{2}$/.test(v || '');
}

// ---------------------------------------------------------------- labels

/** A label: the Chinese name with the English beside it. */
function labelNode(label, code) {
  if (!label) return h('span', { class: 'code' }, code ?? '-');
  return h('span', { class: 'label', title: code },
    h('span', { class: 'zh' }, label.zh), ' ', h('span', { class: 'en' }, label.en));
}

function kindLabel(kind) {
  return labelNode(app.labels?.kinds?.[kind], kind);
}

function stateLabel(kind, state) {
  return labelNode(app.labels?.states?.[kind]?.[state], state);
}

function timerLabel(name) {
  return labelNode(app.labels?.timers?.[name], name);
}

function timerLabels(names) {
  return (names || []).map((n, i) => [i ? ', ' : '', timerLabel(n)]);
}

/** Every state of every kind, for the status filter. */
function allStates(kind) {
  const out = new Map();
  const kinds = kind ? [kind] : Object.keys(app.labels?.states || {});
  for (const k of kinds) {
    for (const [code, label] of Object.entries(app.labels.states[k] || {})) {
      if (!out.has(code)) out.set(code, label);
    }
  }
  return out;
}

// ---------------------------------------------------------------- API

class AuthError extends Error {}

async function errorText(res) {
  try {
    const body = await res.json();
    if (body && typeof body.error === 'string') return body.error;
  } catch (_) {
    // Not JSON: fall back to the status line.
  }
  return `${res.status} ${res.statusText}`;
}

/**
 * GET `path` with the token. A 401 or 403 signs out and shows the relay's
 * message on the sign-in form. `csv` asks for a blob, `allow404` answers
 * null for a 404 (an endpoint this relay does not have yet).
 */
async function api(path, { csv = false, allow404 = false } = {}) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (!token) {
    showSignIn('');
    throw new AuthError('not signed in');
  }
  let res;
  try {
    res = await fetch(path, {
      headers: {
        Authorization: `Bearer ${token}`,
        Accept: csv ? 'text/csv' : 'application/json',
      },
      cache: 'no-store',
      credentials: 'omit',
    });
  } catch (e) {
    throw new Error(`the relay did not answer (${e.message})`);
  }
  if (res.status === 401 || res.status === 403) {
    const msg = await errorText(res);
    signOut(`${res.status}: ${msg}`);
    throw new AuthError(msg);
  }
  if (allow404 && res.status === 404) return null;
  if (!res.ok) throw new Error(`${res.status}: ${await errorText(res)}`);
  return csv ? res.blob() : res.json();
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== null && v !== undefined && v !== '') q.set(k, v);
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

/** Fetches a CSV with the token and saves it; no token in any URL. */
async function download(path, name) {
  setStatus(`downloading ${name} …`);
  try {
    const blob = await api(path, { csv: true });
    const url = URL.createObjectURL(blob);
    const a = h('a', { href: url, download: name, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    const lines = (await blob.text()).split('\n').filter((l) => l.trim() !== '').length;
    setStatus(`saved ${name}: ${Math.max(0, lines - 1)} row(s)`);
  } catch (e) {
    if (!(e instanceof AuthError)) setStatus(`download failed: ${e.message}`);
  }
}

/**
 * Fetches a piece of a case's evidence with the token and saves it under
 * its hash; no token in any URL, so no link to the bytes is left around.
 */
async function saveEvidence(caseId, e) {
  const ext = {
    'image/jpeg': 'jpg', 'image/png': 'png', 'image/webp': 'webp', 'image/gif': 'gif', 'image/heif': 'heic',
    'video/mp4': 'mp4', 'video/quicktime': 'mov', 'application/pdf': 'pdf',
  }[e.media_type] || 'bin';
  const name = `${e.hash}.${ext}`;
  setStatus(`downloading ${name} …`);
  try {
    const blob = await api(`/v1/cases/${encodeURIComponent(caseId)}/evidence/${e.hash}`, { csv: true });
    const url = URL.createObjectURL(blob);
    const a = h('a', { href: url, download: name, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    setStatus(`saved ${name}: ${blob.size} bytes`);
  } catch (err) {
    if (!(err instanceof AuthError)) setStatus(`download failed: ${err.message}`);
  }
}

// ---------------------------------------------------------------- sign-in

function showSignIn(message) {
  byId('nav').hidden = true;
  byId('view').hidden = true;
  byId('view').replaceChildren();
  byId('signin').hidden = false;
  byId('signin-error').textContent = message || '';
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  app.labels = null;
  app.devices = null;
  showSignIn(message);
}

/** Loads what every view needs; fails with AuthError on a bad token. */
async function boot() {
  const [labels, policy] = await Promise.all([api('/v1/labels'), api('/v1/policy')]);
  app.labels = labels;
  if (Number.isInteger(policy?.utc_offset_minutes)) app.offsetMinutes = policy.utc_offset_minutes;
  byId('zone').textContent = `times UTC${zone()}`;
  app.devices = await hasDeviceList();
}

/**
 * Whether this relay lists devices (the endpoint is newer than some
 * relays): 200 shows the panel, anything else hides it. Asked without
 * `api` so a refusal here never signs the user out.
 */
async function hasDeviceList() {
  try {
    const res = await fetch('/v1/queues/devices', {
      headers: { Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY)}` },
      cache: 'no-store',
      credentials: 'omit',
    });
    return res.status === 200;
  } catch (_) {
    return false;
  }
}

async function onSignIn(ev) {
  ev.preventDefault();
  const token = byId('token').value.trim();
  if (!token) {
    byId('signin-error').textContent = 'paste a token first';
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  byId('token').value = '';
  byId('signin-error').textContent = '';
  try {
    await boot();
  } catch (e) {
    if (!(e instanceof AuthError)) signOut(e.message);
    return;
  }
  if (!location.hash || location.hash === '#' || location.hash === '#/') {
    location.hash = '#/queues/overdue';
  } else {
    render();
  }
}

// ---------------------------------------------------------------- tables

/** A table; `columns` are [heading, (row) => node or text]. */
function table(testId, columns, rows, rowTest) {
  return h('table', { 'data-test': testId },
    h('thead', {}, h('tr', {}, columns.map(([head]) => h('th', {}, head)))),
    h('tbody', {}, rows.length === 0
      ? h('tr', {}, h('td', { colspan: columns.length, class: 'muted', 'data-test': 'empty' }, '无 none'))
      : rows.map((r) => h('tr', { 'data-test': rowTest },
        columns.map(([, cell]) => h('td', {}, cell(r)))))));
}

function caseLink(row) {
  return h('a', {
    href: `#/case/${encodeURIComponent(row.id)}`,
    'data-test': 'case-link',
    'data-case-no': row.case_no || '',
  }, row.case_no || row.id);
}

function flags(row) {
  const out = [];
  if (row.open_conflicts > 0) out.push(h('span', { class: 'flag warn' }, `冲突 conflict ×${row.open_conflicts}`));
  if (row.awaiting_approval > 0) out.push(h('span', { class: 'flag' }, `待审批 approval ×${row.awaiting_approval}`));
  if (row.escalation) out.push(h('span', { class: 'flag' }, `升级 ${row.escalation}`));
  return out;
}

const CASE_COLUMNS = [
  ['案件号 case', caseLink],
  ['门店 store', (r) => r.store_id],
  ['类型 kind', (r) => kindLabel(r.kind)],
  ['状态 status', (r) => stateLabel(r.kind, r.status)],
  ['负责人 assignee', (r) => r.assignee || ''],
  ['下个期限 next due', (r) => fmtTime(r.next_due)],
  ['已超时 breached', (r) => h('span', { class: 'bad' }, timerLabels(r.breached))],
  ['标记 flags', flags],
  ['更新 updated', (r) => fmtTime(r.updated_at)],
  ['最后 last by', (r) => `${r.last_user || ''} @ ${r.last_device || ''}`],
];

const DUE_COLUMNS = [
  ['到期 due at', (r) => fmtTime(r.due_at)],
  ['期限 deadline', (r) => timerLabels(r.due)],
  ...CASE_COLUMNS.filter(([head]) => !head.startsWith('下个期限')),
];

/**
 * A paged list: `load(after)` answers {rows, next}. Shows one page with
 * previous/next buttons; the cursors of earlier pages are kept so the
 * user can go back.
 */
function pager(testId, columns, load) {
  const box = h('div', { class: 'pager', 'data-test': `${testId}-pager` });
  const cursors = [null];
  async function show(index) {
    const seq = app.renderSeq;
    box.replaceChildren(h('p', { class: 'muted' }, '加载中 loading …'));
    let page;
    try {
      page = await load(cursors[index]);
    } catch (e) {
      if (seq === app.renderSeq && !(e instanceof AuthError)) box.replaceChildren(errorNode(e));
      return;
    }
    if (seq !== app.renderSeq) return;
    cursors.length = index + 1;
    if (page.next) cursors.push(page.next);
    box.replaceChildren(
      table(testId, columns, page.rows, 'case-row'),
      h('p', { class: 'buttons' },
        h('button', {
          type: 'button', 'data-test': 'prev-page', disabled: index === 0,
          onclick: () => show(index - 1),
        }, '上一页 previous'),
        ` 第 ${index + 1} 页 page ${index + 1} `,
        h('button', {
          type: 'button', 'data-test': 'next-page', disabled: !page.next,
          onclick: () => show(index + 1),
        }, '下一页 next page')));
  }
  show(0);
  return box;
}

function errorNode(e) {
  return h('p', { class: 'error', 'data-test': 'error', role: 'alert' }, e.message || String(e));
}

// ---------------------------------------------------------------- forms

function field(label, input) {
  return h('label', { class: 'field' }, h('span', {}, label), input);
}

function textInput(name, value, test, placeholder) {
  return h('input', { type: 'text', name, value: value || '', 'data-test': test, placeholder, autocomplete: 'off' });
}

function select(name, value, test, options) {
  const el = h('select', { name, 'data-test': test },
    options.map(([v, text]) => h('option', { value: v }, text)));
  el.value = value || '';
  return el;
}

function kindOptions() {
  return [['', '全部 all'], ...Object.entries(app.labels.kinds).map(([k, l]) => [k, `${l.zh} ${l.en}`])];
}

function yesNo(name, value, test) {
  return select(name, value, test, [['', '全部 any'], ['true', '是 yes'], ['false', '否 no']]);
}

/** The form's non-empty values as an object. */
function formValues(form) {
  const out = {};
  for (const [k, v] of new FormData(form).entries()) {
    if (typeof v === 'string' && v.trim() !== '') out[k] = v.trim();
  }
  return out;
}

// ---------------------------------------------------------------- views

const QUEUES = [
  { name: 'overdue', title: '已超时 overdue', due: true },
  { name: 'due-soon', title: '即将到期 due soon', due: true },
  { name: 'conflicts', title: '冲突 conflicts' },
  { name: 'approvals', title: '待审批 approvals' },
  { name: 'devices', title: '设备 devices', devices: true },
];

function queuesView(name, params) {
  const queue = QUEUES.find((q) => q.name === name) || QUEUES[0];
  const tabs = h('nav', { class: 'tabs', 'data-test': 'queue-tabs' },
    QUEUES.map((q) => h('a', {
      href: `#/queues/${q.name}${query({ store: params.get('store') })}`,
      class: q.name === queue.name ? 'active' : null,
      'data-test': `queue-tab-${q.name}`,
      hidden: q.devices && !app.devices,
    }, q.title)));
  const form = h('form', { class: 'filters', 'data-test': 'queue-filters' },
    field('门店 store', textInput('store', params.get('store'), 'queue-store', 'S001')),
    queue.due || queue.devices ? null : field('类型 kind', select('kind', params.get('kind'), 'queue-kind', kindOptions())),
    queue.name === 'due-soon'
      ? field('小时内 within hours', h('input', {
        type: 'number', name: 'within_hours', min: 1, max: 720,
        value: params.get('within_hours') || '24', 'data-test': 'queue-within',
      }))
      : null,
    h('button', { type: 'submit', 'data-test': 'queue-apply' }, '筛选 apply'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    location.hash = `#/queues/${queue.name}${query(formValues(form))}`;
  });
  const filters = {
    store: params.get('store'),
    kind: queue.due ? null : params.get('kind'),
    within_hours: queue.name === 'due-soon' ? params.get('within_hours') : null,
  };
  let body;
  if (queue.devices) {
    body = devicesPanel(filters.store);
  } else {
    const path = `/v1/queues/${queue.name}`;
    body = pager('queue-table', queue.due ? DUE_COLUMNS : CASE_COLUMNS, async (after) => {
      const v = await api(path + query({ ...filters, after, limit: PAGE }));
      return { rows: v.cases || [], next: v.next };
    });
  }
  const csv = h('button', {
    type: 'button', 'data-test': 'queue-csv',
    onclick: () => download(`/v1/queues/${queue.name}${query({ ...(queue.devices ? { store: filters.store } : filters), format: 'csv' })}`, `${queue.name}.csv`),
  }, '下载 CSV download');
  return h('div', { 'data-test': `queue-${queue.name}` },
    h('h2', {}, '工作队列 queues'), tabs, form, csv, body);
}

const hoursText = (x) => (typeof x === 'number' ? `${x.toFixed(1)} h` : '');

const DEVICE_COLUMNS = [
  ['门店 store', (d) => d.store_id],
  ['设备 device', (d) => d.device],
  ['用户 user', (d) => `${d.user || ''} (${d.role || ''})`],
  ['版本 app', (d) => d.app_version],
  ['最后在线 last seen', (d) => fmtTime(d.last_seen)],
  ['最后同步 last sync', (d) => (d.last_sync ? fmtTime(d.last_sync) : h('span', { class: 'bad' }, '从未 never'))],
  ['未同步 since sync', (d) => hoursText(d.hours_since_sync)],
  ['待同步 pending', (d) => d.pending],
  ['最旧未同步 oldest unsynced', (d) => hoursText(d.oldest_unsynced_hours)],
];

/** The fleet (GET /v1/queues/devices): one page, longest without a sync first. */
function devicesPanel(store) {
  const box = h('div', { class: 'pager', 'data-test': 'devices-pager' });
  const seq = app.renderSeq;
  box.append(h('p', { class: 'muted' }, '加载中 loading …'));
  api(`/v1/queues/devices${query({ store })}`, { allow404: true }).then((v) => {
    if (seq !== app.renderSeq) return;
    if (v === null) {
      box.replaceChildren(h('p', { class: 'muted' }, 'this relay has no device list'));
      return;
    }
    box.replaceChildren(table('devices-table', DEVICE_COLUMNS, v.devices || [], 'device-row'));
  }).catch((e) => {
    if (seq === app.renderSeq && !(e instanceof AuthError)) box.replaceChildren(errorNode(e));
  });
  return box;
}

const LIST_FILTERS = ['store', 'kind', 'status', 'breached', 'has_conflict', 'awaiting_approval', 'case_no', 'assignee'];

function casesView(params) {
  const p = Object.fromEntries(LIST_FILTERS.map((k) => [k, params.get(k)]));
  const states = [['', '全部 all'], ...[...allStates(p.kind)].map(([c, l]) => [c, `${l.zh} ${l.en}`])];
  const form = h('form', { class: 'filters', 'data-test': 'case-filters' },
    field('门店 store', textInput('store', p.store, 'filter-store', 'S001')),
    field('类型 kind', select('kind', p.kind, 'filter-kind', kindOptions())),
    field('状态 status', select('status', p.status, 'filter-status', states)),
    field('已超时 breached', yesNo('breached', p.breached, 'filter-breached')),
    field('有冲突 conflict', yesNo('has_conflict', p.has_conflict, 'filter-conflict')),
    field('待审批 approval', yesNo('awaiting_approval', p.awaiting_approval, 'filter-approval')),
    field('案件号 case no.', textInput('case_no', p.case_no, 'filter-case-no', 'S001-tab-a-1')),
    field('负责人 assignee', textInput('assignee', p.assignee, 'filter-assignee', '')),
    h('button', { type: 'submit', 'data-test': 'filter-apply' }, '筛选 apply'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    location.hash = `#/cases${query(formValues(form))}`;
  });
  return h('div', { 'data-test': 'cases' },
    h('h2', {}, '案件 cases'),
    form,
    h('button', {
      type: 'button', 'data-test': 'cases-csv',
      onclick: () => download(`/v1/cases${query({ ...p, format: 'csv' })}`, 'cases.csv'),
    }, '下载 CSV download'),
    pager('case-table', CASE_COLUMNS, async (after) => {
      const v = await api(`/v1/cases${query({ ...p, after, limit: PAGE })}`);
      return { rows: v.cases || [], next: v.next };
    }));
}

function section(title, test, ...content) {
  return h('section', { class: 'panel', 'data-test': test }, h('h3', {}, title), content);
}

function timerState(t) {
  if (t.done) return t.breached ? h('span', { class: 'bad' }, '逾期完成 met late') : '按时完成 met';
  return t.breached ? h('span', { class: 'bad' }, '已超时 OVERDUE') : '进行中 open';
}

async function caseView(id) {
  const v = await api(`/v1/cases/${encodeURIComponent(id)}`);
  const dl = (pairs) => h('dl', { class: 'facts' },
    pairs.filter(([, val]) => val !== null && val !== undefined && val !== '')
      .map(([k, val]) => [h('dt', {}, k), h('dd', {}, val)]));
  const openConflicts = (v.conflicts || []).filter((c) => c.status === 'open');
  return h('div', { 'data-test': 'case-detail' },
    h('p', {}, h('a', { href: '#/cases', 'data-test': 'back-to-cases' }, '← 案件 cases')),
    h('h2', { 'data-test': 'case-title' }, v.case_no || v.id, ' ',
      h('span', { 'data-test': 'case-kind' }, kindLabel(v.kind)), ' ',
      h('span', { class: 'status', 'data-test': 'case-status' }, stateLabel(v.kind, v.status))),
    openConflicts.length
      ? h('p', { class: 'error', 'data-test': 'case-conflicts' },
        openConflicts.map((c) => `冲突 conflict ${c.id}: ${c.from} → ${c.options.join(' / ')} (${c.proposed_by.join(' / ')})`))
      : null,
    dl([
      ['门店 store', v.store_id],
      ['开单 opened', `${fmtTime(v.created_at)} · ${v.created_by || ''} @ ${v.device_id || ''}`],
      ['负责人 assignee', v.assignee],
      ['优先级 priority', v.priority],
      ['类别 category', v.category],
      ['升级 escalation', v.escalation],
      ['客户 customer', [v.customer?.name, v.customer?.phone].filter(Boolean).join(' · ')],
      ['问题 problem', v.description],
      ['下一步 next steps', (v.allowed_transitions || []).map((s, i) => [i ? ', ' : '', stateLabel(v.kind, s)])],
    ]),
    section('期限 deadlines', 'case-timers', table('timers-table', [
      ['期限 deadline', (t) => timerLabel(t.name)],
      ['到期 due', (t) => fmtTime(t.due)],
      ['状态 state', timerState],
    ], v.timers || [], 'timer-row')),
    (v.schedule_conflicts || []).length
      ? h('p', { class: 'error', 'data-test': 'case-schedule-conflicts' },
        v.schedule_conflicts.map((c) => `排期冲突 double booking: ${c.tech} ${fmtTime(c.from)} – ${fmtTime(c.until)} `
          + `(${c.first.case === v.id ? c.second.case : c.first.case})`))
      : null,
    section('预约 bookings', 'case-bookings', table('bookings-table', [
      ['技师 technician', (b) => b.tech],
      ['开始 start', (b) => fmtTime(b.start)],
      ['结束 end', (b) => fmtTime(b.end)],
      ['到达截止 arrive by', (b) => fmtTime(b.window_end)],
      ['状态 status', (b) => b.status],
      ['改期 reschedules', (b) => String(b.reschedules)],
      ['原因 reason', (b) => b.reason || ''],
    ], v.bookings || [], 'booking-row')),
    section('赔偿 offers', 'case-offers', table('offers-table', [
      ['编号 id', (o) => o.id],
      ['类型 tier', (o) => o.tier],
      ['金额 amount ¥', (o) => o.amount],
      ['状态 status', (o) => o.status],
      ['提出 by', (o) => o.proposed_by],
      ['决定 decided by', (o) => o.decided_by || ''],
      ['备注 note', (o) => o.note || ''],
    ], v.offers || [], 'offer-row')),
    section('证据 evidence', 'case-evidence', table('evidence-table', [
      ['类型 type', (e) => e.kind],
      ['说明 caption', (e) => e.caption || ''],
      ['大小 size', (e) => `${(e.size / 1e6).toFixed(2)} MB`],
      ['拍摄 captured', (e) => fmtTime(e.captured_at)],
      ['人员 by', (e) => `${e.author || ''} @ ${e.device || ''}`],
      ['', (e) => (e.removed
        ? h('span', { class: 'muted' }, `已移除 removed: ${e.removed.reason}`)
        : h('button', { type: 'button', 'data-test': 'evidence-save', onclick: () => saveEvidence(v.id, e) }, '保存 save'))],
    ], v.evidence || [], 'evidence-row')),
    section('联系 contact attempts', 'case-contacts', table('contacts-table', [
      ['时间 at', (c) => fmtTime(c.at)],
      ['方式 channel', (c) => c.channel || ''],
      ['结果 outcome', (c) => c.outcome || ''],
      ['人员 by', (c) => `${c.author || ''} @ ${c.device || ''}`],
    ], v.contact_attempts || [], 'contact-row')),
    section('处理记录 timeline', 'case-timeline', h('ol', { class: 'timeline', 'data-test': 'timeline' },
      (v.timeline || []).map((e) => h('li', { 'data-test': 'timeline-entry' },
        h('time', {}, fmtTime(e.at)), ' ',
        h('span', { class: 'entry-kind' }, e.type), ' ',
        e.text || (e.field ? `${e.field} → ${e.value ?? ''}` : ''), ' ',
        h('span', { class: 'muted' }, `(${e.author || ''} @ ${e.device || ''})`))))),
    section('审计 audit trail', 'case-audit', table('audit-table', [
      ['收到 received', (a) => fmtTime(a.received_at)],
      ['设备时间 device time', (a) => fmtTime(a.claimed_at)],
      ['时差 skew', (a) => (a.clock_skew_ms === null || a.clock_skew_ms === undefined)
        ? '' : `${(a.clock_skew_ms / 3600000).toFixed(1)} h`],
      ['用户 user', (a) => a.user],
      ['设备 device', (a) => a.device],
      ['变更 change', (a) => h('code', {}, String(a.change).slice(0, 12))],
    ], v.audit || [], 'audit-row')));
}

// ---------------------------------------------------------------- schedule

/** A store's day (GET /v1/schedule): every technician's bookings, double bookings marked. */
function scheduleView(params) {
  const store = params.get('store') || '';
  const date = isDate(params.get('date')) ? params.get('date') : localDate();
  const form = h('form', { class: 'filters', 'data-test': 'schedule-filters' },
    field('门店 store', textInput('store', store, 'schedule-store', 'S001')),
    field('日期 date', h('input', { type: 'date', name: 'date', value: date, 'data-test': 'schedule-date' })),
    h('button', { type: 'submit', 'data-test': 'schedule-apply' }, '查看 show'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    location.hash = `#/schedule${query(formValues(form))}`;
  });
  const range = { store: store || null, from: midnight(date), to: midnight(nextDay(date)) };
  const box = h('div', { 'data-test': 'schedule-body' }, h('p', { class: 'muted' }, '加载中 loading …'));
  const seq = app.renderSeq;
  api(`/v1/schedule${query(range)}`).then((v) => {
    if (seq !== app.renderSeq) return;
    const rows = v.bookings || [];
    const techs = [...new Set(rows.map((r) => r.tech))].sort();
    box.replaceChildren(...(techs.length === 0
      ? [table('schedule-table', [], [], 'schedule-row')]
      : techs.map((t) => section(`技师 ${t}`, 'schedule-tech', table('schedule-table', [
        ['时间 time', (r) => `${fmtTime(r.start).slice(11)} – ${fmtTime(r.end).slice(11)}`],
        ['案件号 case', (r) => caseLink({ id: r.case_id, case_no: r.case_no })],
        ['类型 kind', (r) => kindLabel(r.kind)],
        ['状态 status', (r) => stateLabel(r.kind, r.status)],
        ['冲突 conflict', (r) => (r.conflicts.length
          ? h('span', { class: 'flag warn', 'data-test': 'schedule-conflict' }, `排期冲突 double booking ×${r.conflicts.length}`)
          : '')],
      ], rows.filter((r) => r.tech === t), 'schedule-row')))));
  }).catch((e) => {
    if (seq === app.renderSeq && !(e instanceof AuthError)) box.replaceChildren(errorNode(e));
  });
  return h('div', { 'data-test': 'schedule' },
    h('h2', {}, '日程 schedule'),
    form,
    h('button', {
      type: 'button', 'data-test': 'schedule-csv',
      onclick: () => download(`/v1/schedule${query({ ...range, format: 'csv' })}`, 'schedule.csv'),
    }, '下载 CSV download'),
    h('p', { class: 'muted' }, `${date} (UTC${zone()})`),
    box);
}

// ---------------------------------------------------------------- charts

const CHART_WIDTH = 720;

/**
 * Horizontal bars, one row per group and one bar per series. `groups`:
 * [{label, values: [number|null]}]; `series`: [{name, cls}]. Drawn as
 * SVG elements with text nodes, like everything else.
 */
function barChart(id, title, groups, series, { max, fmt = (x) => String(x) } = {}) {
  const barH = 16;
  const rowH = series.length * (barH + 2) + 10;
  const left = 170;
  const right = 90;
  const top = 26;
  const height = top + Math.max(1, groups.length) * rowH + 4;
  const values = groups.flatMap((g) => g.values).filter((x) => typeof x === 'number');
  const scale = max ?? Math.max(...values, 0);
  const width = CHART_WIDTH - left - right;
  const legend = series.map((s, i) => [
    svg('rect', { x: left + i * 150, y: 6, width: 12, height: 12, class: `bar ${s.cls}` }),
    svg('text', { x: left + i * 150 + 16, y: 17, class: 'legend' }, s.name),
  ]);
  const rows = groups.map((g, gi) => {
    const y0 = top + gi * rowH;
    return [
      svg('text', { x: left - 8, y: y0 + rowH / 2, class: 'axis', 'text-anchor': 'end', 'dominant-baseline': 'middle' }, g.label),
      series.map((s, si) => {
        const v = g.values[si];
        const y = y0 + si * (barH + 2);
        if (typeof v !== 'number') {
          return svg('text', { x: left + 4, y: y + barH - 3, class: 'value muted' }, '– no data');
        }
        const w = scale > 0 ? Math.max(1, (v / scale) * width) : 1;
        return [
          svg('rect', { x: left, y, width: w.toFixed(1), height: barH, class: `bar ${s.cls}`, 'data-test': 'bar' },
            svg('title', {}, `${g.label} · ${s.name}: ${fmt(v)}`)),
          svg('text', { x: left + w + 4, y: y + barH - 3, class: 'value' }, fmt(v)),
        ];
      }),
    ];
  });
  return h('figure', { class: 'chart', 'data-test': `chart-${id}` },
    h('figcaption', {}, title),
    svg('svg', {
      width: CHART_WIDTH, height, viewBox: `0 0 ${CHART_WIDTH} ${height}`,
      role: 'img', 'aria-label': title,
    }, legend, rows));
}

const hours = (x) => `${x.toFixed(1)} h`;
const percent = (x) => `${Math.round(x * 100)}%`;

/** The on-time rate over all deadlines of a group. */
function onTimeRate(g) {
  let met = 0;
  let all = 0;
  for (const t of Object.values(g.on_time || {})) {
    met += t.met_on_time;
    all += t.met_on_time + t.met_late + t.open_overdue;
  }
  return all > 0 ? met / all : null;
}

function groupLabel(groupBy, key) {
  if (groupBy === 'kind') {
    const l = app.labels?.kinds?.[key];
    return l ? `${l.zh} ${l.en}` : key;
  }
  return key;
}

const GROUP_BY = [
  ['store', '门店 store'], ['month', '月份 month'], ['kind', '类型 kind'],
  ['category', '类别 category'], ['sku', 'SKU'], ['chain', '全部 whole chain'],
];

async function metricsView(params) {
  const from = isDate(params.get('from')) ? params.get('from') : monthStart();
  const to = isDate(params.get('to')) ? params.get('to') : localDate();
  const groupBy = params.get('group_by') || 'store';
  const store = params.get('store') || '';
  const kind = params.get('kind') || '';
  const form = h('form', { class: 'filters', 'data-test': 'metrics-filters' },
    field('从 from', h('input', { type: 'date', name: 'from', value: from, 'data-test': 'metrics-from' })),
    field('到 to (含 inclusive)', h('input', { type: 'date', name: 'to', value: to, 'data-test': 'metrics-to' })),
    field('分组 group by', select('group_by', groupBy, 'metrics-group-by', GROUP_BY)),
    field('门店 store', textInput('store', store, 'metrics-store', 'S001')),
    field('类型 kind', select('kind', kind, 'metrics-kind', kindOptions())),
    h('button', { type: 'submit', 'data-test': 'metrics-apply' }, '查看 show'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    location.hash = `#/metrics${query(formValues(form))}`;
  });
  const preset = (label, test, f, t) => h('button', {
    type: 'button', 'data-test': test,
    onclick: () => { location.hash = `#/metrics${query({ from: f, to: t, group_by: groupBy, store, kind })}`; },
  }, label);
  const presets = h('p', { class: 'buttons' },
    preset('本月 this month', 'period-month', monthStart(), localDate()),
    preset('近30天 last 30 days', 'period-30', localDate(-29), localDate()),
    preset('近90天 last 90 days', 'period-90', localDate(-89), localDate()),
    preset('近一年 last 12 months', 'period-365', localDate(-364), localDate()));
  const api_params = { from: midnight(from), to: midnight(nextDay(to)), group_by: groupBy, store, kind };
  const csv = h('button', {
    type: 'button', 'data-test': 'metrics-csv',
    onclick: () => download(`/v1/metrics/service${query({ ...api_params, format: 'csv' })}`, 'metrics.csv'),
  }, '下载 CSV download');
  const head = [h('h2', {}, '服务指标 service metrics'), form, presets, csv];
  let m;
  try {
    m = await api(`/v1/metrics/service${query(api_params)}`);
  } catch (e) {
    if (e instanceof AuthError) throw e;
    return h('div', { 'data-test': 'metrics' }, head, errorNode(e));
  }
  const groups = (m.groups && m.groups.length ? m.groups : [{ ...m.total, key: '全部 chain' }]);
  const rows = (pick) => groups.map((g) => ({ label: groupLabel(groupBy, g.key), values: pick(g) }));
  const charts = h('div', { class: 'charts', 'data-test': 'charts' },
    barChart('volume', '案件量 case volume', rows((g) => [g.cases, g.resolved]),
      [{ name: '案件 cases', cls: 's1' }, { name: '已解决 resolved', cls: 's2' }]),
    barChart('on-time', '按时率 on-time rate (all deadlines)', rows((g) => [onTimeRate(g)]),
      [{ name: '按时 on time', cls: 's2' }], { max: 1, fmt: percent }),
    barChart('response', '响应时间 response time (hours)',
      rows((g) => [g.response?.p50_hours ?? null, g.response?.p90_hours ?? null]),
      [{ name: 'p50', cls: 's1' }, { name: 'p90', cls: 's3' }], { fmt: hours }),
    barChart('resolution', '解决时间 resolution time (hours)',
      rows((g) => [g.resolution?.p50_hours ?? null, g.resolution?.p90_hours ?? null]),
      [{ name: 'p50', cls: 's1' }, { name: 'p90', cls: 's3' }], { fmt: hours }),
    barChart('satisfaction', '满意度 satisfaction (1-5)',
      rows((g) => [g.satisfaction?.mean ?? null]),
      [{ name: '平均 mean', cls: 's2' }], { max: 5, fmt: (x) => x.toFixed(2) }));
  const summary = table('metrics-table', [
    ['分组 group', (g) => groupLabel(groupBy, g.key)],
    ['案件 cases', (g) => g.cases],
    ['已解决 resolved', (g) => g.resolved],
    ['取消 cancelled', (g) => g.cancelled],
    ['按时率 on time', (g) => { const r = onTimeRate(g); return r === null ? '' : percent(r); }],
    ['满意 4-5', (g) => (g.satisfaction?.share_4_5 == null ? '' : percent(g.satisfaction.share_4_5))],
    ['回复率 survey rate', (g) => (g.satisfaction?.response_rate == null ? '' : percent(g.satisfaction.response_rate))],
    ['重复投诉 repeat', (g) => (g.repeat_complaint_rate == null ? '' : percent(g.repeat_complaint_rate))],
    ['返修 re-repair', (g) => (g.re_repair_rate == null ? '' : percent(g.re_repair_rate))],
    ['升级 escalated', (g) => (g.escalation_rate == null ? '' : percent(g.escalation_rate))],
    ['赔偿 compensation ¥', (g) => Object.entries(g.compensation_by_tier_fen || {})
      .map(([t, fen]) => `${t} ${(fen / 100).toFixed(2)}`).join(', ')],
  ], [...(m.groups || []), { ...m.total, key: '合计 total' }], 'metrics-row');
  const skus = (m.quality_skus || []).length
    ? section('质量问题 SKU quality flags', 'quality-skus',
      h('ul', {}, m.quality_skus.map((s) => h('li', {}, `${s.sku}: ${s.cases}`))))
    : null;
  return h('div', { 'data-test': 'metrics' }, head,
    h('p', { class: 'muted', 'data-test': 'metrics-period' },
      `${fmtTime(m.from)} – ${fmtTime(m.to)} (UTC${zone()})`),
    charts, summary, skus);
}

// ---------------------------------------------------------------- router

async function render() {
  const seq = ++app.renderSeq;
  if (!sessionStorage.getItem(TOKEN_KEY)) {
    showSignIn(byId('signin-error').textContent);
    return;
  }
  try {
    if (!app.labels) await boot();
  } catch (e) {
    if (!(e instanceof AuthError)) signOut(e.message);
    return;
  }
  byId('signin').hidden = true;
  byId('nav').hidden = false;
  const view = byId('view');
  view.hidden = false;
  const [path, q] = (location.hash || '#/queues/overdue').slice(1).split('?');
  const params = new URLSearchParams(q || '');
  const parts = path.split('/').filter(Boolean);
  for (const a of document.querySelectorAll('#nav a')) {
    a.classList.toggle('active', a.getAttribute('href').split('/')[1] === parts[0]);
  }
  view.replaceChildren(h('p', { class: 'muted' }, '加载中 loading …'));
  let node;
  try {
    if (parts[0] === 'cases') node = casesView(params);
    else if (parts[0] === 'case' && parts[1]) node = await caseView(decodeURIComponent(parts[1]));
    else if (parts[0] === 'metrics') node = await metricsView(params);
    else if (parts[0] === 'schedule') node = scheduleView(params);
    else node = queuesView(parts[1] || 'overdue', params);
  } catch (e) {
    if (e instanceof AuthError) return;
    node = errorNode(e);
  }
  if (seq === app.renderSeq) view.replaceChildren(node);
}

document.addEventListener('DOMContentLoaded', () => {
  byId('signin-form').addEventListener('submit', onSignIn);
  byId('signout').addEventListener('click', () => signOut(''));
  window.addEventListener('hashchange', render);
  render();
});
