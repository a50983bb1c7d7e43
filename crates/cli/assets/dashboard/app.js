// The eventbus dashboard: plain JavaScript, no dependencies, no build step.
//
// Everything the server sends is put into the page with textContent or as attribute values,
// never parsed as HTML: events carry customer data. The API token lives in sessionStorage (this
// tab only) and travels in the Authorization header, never in a URL.
'use strict';

(() => {
  const TOKEN_KEY = 'eventbus.dashboard.token';
  /** Events kept in the list. */
  const MAX_EVENTS = 200;
  /** Recommendations kept in the feed. */
  const MAX_RECOMMENDATIONS = 100;
  /** Seconds shown by the rate chart. */
  const WINDOW = 60;
  const RECOMMENDATIONS_TOPIC = 'capera.recommendations';
  const EVERY = { status: 2000, groups: 3000, accounts: 3000, topics: 5000, letters: 3000 };
  const PALETTE = ['#1f6feb', '#d1242f', '#1a7f37', '#bf8700', '#8250df', '#0a7ea4', '#cf4a00', '#bf3989'];
  const OTHER_COLOR = '#8c959f';
  /** Topics drawn with their own line, one per colour; the others are summed into one. */
  const MAX_LINES = PALETTE.length;

  const $ = (id) => document.getElementById(id);
  const number = new Intl.NumberFormat('en-US');

  /**
   * The server refused the request (401 or 403): the token, or, when `requiredRole` is set, the
   * token's role, too low for what was asked (the token itself is fine).
   */
  class AuthError extends Error {
    constructor(status, message, requiredRole) {
      super(message);
      this.status = status;
      this.requiredRole = requiredRole || null;
    }
  }

  /** The running session: its token, and what stops its loops and requests. */
  let session = null;

  // ---------------------------------------------------------------- requests

  /** The text of an error answer, and the role it says is needed (a 403 for a too-low role). */
  async function errorDetails(response) {
    try {
      const body = await response.json();
      if (body && body.error && body.error.message) {
        return {
          text: `${body.error.message} (${response.status} ${body.error.code})`,
          requiredRole: body.error.required_role ? String(body.error.required_role) : null,
        };
      }
    } catch (_) {
      // Not our JSON error shape.
    }
    return { text: `${response.status} ${response.statusText}`, requiredRole: null };
  }

  async function errorText(response) {
    return (await errorDetails(response)).text;
  }

  /** The AuthError of a 401 or 403 answer. */
  async function refusal(response) {
    const details = await errorDetails(response);
    return new AuthError(response.status, details.text, details.requiredRole);
  }

  async function api(s, path) {
    const response = await fetch(path, {
      headers: { Authorization: `Bearer ${s.token}`, Accept: 'application/json' },
      signal: s.abort.signal,
      cache: 'no-store',
    });
    if (response.status === 401 || response.status === 403) {
      throw await refusal(response);
    }
    if (!response.ok) {
      throw new Error(await errorText(response));
    }
    return response.json();
  }

  /** A request of session `s` with a JSON body (POST); answers the JSON it gets back. */
  async function send(s, method, path, body) {
    const response = await fetch(path, {
      method,
      headers: {
        Authorization: `Bearer ${s.token}`,
        Accept: 'application/json',
        'Content-Type': 'application/json',
      },
      body: JSON.stringify(body),
      signal: s.abort.signal,
      cache: 'no-store',
    });
    if (response.status === 401 || response.status === 403) {
      throw await refusal(response);
    }
    if (!response.ok) {
      throw new Error(await errorText(response));
    }
    return response.json();
  }

  function sleep(ms, signal) {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      signal.addEventListener('abort', () => {
        clearTimeout(timer);
        resolve();
      }, { once: true });
    });
  }

  function showError(id, error) {
    const element = $(id);
    element.hidden = !error;
    element.textContent = error ? String(error.message || error) : '';
  }

  /**
   * Handles a failed request of session `s`. Returns false when the session is over (signed
   * out, or the token was refused), true when the caller should go on. A request the token's
   * role may not make is only reported: the token is fine for the rest.
   */
  function failed(s, error, errorId) {
    if (s.abort.signal.aborted) {
      return false;
    }
    if (error instanceof AuthError && !error.requiredRole) {
      signOut(error);
      return false;
    }
    if (error instanceof AuthError && errorId) {
      showError(errorId, `Not allowed for this token: ${error.message}`);
      return true;
    }
    if (errorId) {
      showError(errorId, error);
    }
    return true;
  }

  /** Calls `load` every `every` ms while session `s` lasts. */
  async function every(s, ms, errorId, load) {
    while (session === s) {
      try {
        await load();
        if (errorId) {
          showError(errorId, null);
        }
      } catch (error) {
        if (!failed(s, error, errorId)) {
          return;
        }
      }
      await sleep(ms, s.abort.signal);
    }
  }

  // ---------------------------------------------------------------- session

  function authMessage(error) {
    if (error instanceof AuthError && error.status === 401) {
      return `The server asks for a token: ${error.message}`;
    }
    if (error instanceof AuthError) {
      return `The token was refused: ${error.message}`;
    }
    return `The server cannot be reached: ${error.message || error}`;
  }

  async function signIn(token) {
    stop();
    const s = { token, abort: new AbortController() };
    session = s;
    $('token-submit').disabled = true;
    showError('auth-message', null);
    let status;
    try {
      status = await api(s, '/kafka/status');
    } catch (error) {
      if (session === s) {
        signOut(error);
      }
      return;
    } finally {
      $('token-submit').disabled = false;
    }
    if (session !== s) {
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    $('token-input').value = '';
    $('login').hidden = true;
    $('dashboard').hidden = false;
    $('forget-token').hidden = false;
    renderStatus(status);
    follow(s);
    fillEvents(s);
    fillRecommendations(s);
    every(s, EVERY.status, null, async () => {
      try {
        renderStatus(await api(s, '/kafka/status'));
      } catch (error) {
        if (!(error instanceof AuthError)) {
          setText('bus-running', 'unreachable', 'down');
        }
        throw error;
      }
    });
    every(s, EVERY.groups, 'groups-error', async () => renderGroups(await api(s, '/consumer-groups')));
    every(s, EVERY.topics, null, async () => renderTopics(await api(s, '/topics')));
    every(s, EVERY.accounts, 'accounts-error', async () => renderAccounts(await api(s, '/accounts?limit=100')));
    every(s, EVERY.letters, 'dlq-error', () => refreshLetters(s));
  }

  /** Ends the session and clears what it showed: the page shows customer data. */
  function stop() {
    if (session) {
      session.abort.abort();
      session = null;
    }
    events.clear();
    recommendations.clear();
    rates.clear();
    pending.length = 0;
    missed = 0;
    $('event-list').replaceChildren();
    $('recommendation-list').replaceChildren();
    $('account-table').replaceChildren();
    $('group-table').replaceChildren();
    $('browse-list').replaceChildren();
    browsing.next = null;
    openGroups.clear();
    $('browse-next').disabled = true;
    for (const id of ['browse-summary', 'produce-result', 'reset-result', 'groups-total']) {
      $(id).textContent = '';
    }
    for (const id of ['browse-error', 'produce-error', 'reset-error']) {
      showError(id, null);
    }
    $('rate-legend').replaceChildren();
    letters.clear();
    $('dlq-table').replaceChildren();
    $('dlq-count').textContent = '';
    $('dlq-empty').hidden = true;
    clearLetterOutcome();
    showError('dlq-error', null);
    balances.clear();
    for (const id of ['bus-running', 'bus-backend', 'bus-total-events', 'bus-outbox']) {
      setText(id, '–');
    }
    setText('stream-state', 'off');
    updateCounts();
  }

  /** Back to the token form, with why if `error` is given. */
  function signOut(error) {
    stop();
    sessionStorage.removeItem(TOKEN_KEY);
    $('dashboard').hidden = true;
    $('forget-token').hidden = true;
    $('login').hidden = false;
    showError('auth-message', error ? authMessage(error) : null);
    $('token-input').focus();
  }

  function setText(id, text, className) {
    const element = $(id);
    element.textContent = text;
    element.className = className || '';
  }

  // ---------------------------------------------------------------- status

  function renderStatus(status) {
    setText('bus-running', status.status, status.status === 'running' ? 'running' : 'stopped');
    setText('bus-backend', `${status.backend} (${status.type})`);
    setText('bus-total-events', number.format(status.total_events));
    $('bus-total-events').dataset.value = String(status.total_events);
    setText('bus-outbox', status.outbox_backlog == null ? '–' : number.format(status.outbox_backlog));
  }

  // ---------------------------------------------------------------- live stream

  /** Reads the live stream while session `s` lasts, reconnecting with back-off. */
  async function follow(s) {
    let delay = 1000;
    let first = true;
    while (session === s) {
      setText('stream-state', first ? 'connecting' : 'reconnecting', 'reconnecting');
      try {
        const response = await fetch('/events/stream', {
          headers: { Authorization: `Bearer ${s.token}`, Accept: 'text/event-stream' },
          signal: s.abort.signal,
          cache: 'no-store',
        });
        if (response.status === 401 || response.status === 403) {
          throw new AuthError(response.status, await errorText(response));
        }
        if (!response.ok || !response.body) {
          throw new Error(await errorText(response));
        }
        setText('stream-state', 'live', 'running');
        if (!first) {
          // Catch up with what was published while the stream was down.
          fillEvents(s);
          fillRecommendations(s);
        }
        first = false;
        delay = 1000;
        await readFrames(response.body, onFrame);
      } catch (error) {
        if (!failed(s, error, null)) {
          return;
        }
      }
      if (session !== s) {
        return;
      }
      setText('stream-state', 'reconnecting', 'reconnecting');
      await sleep(delay, s.abort.signal);
      delay = Math.min(delay * 2, 15000);
    }
  }

  /** Splits a Server-Sent Events body into frames: `onFrame(eventName, data)`. */
  async function readFrames(body, onFrame) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) {
        return;
      }
      buffer += value;
      // Line ends may be \r\n, \r or \n; a \r at the end of a chunk may be the start of \r\n.
      const held = buffer.endsWith('\r') ? '\r' : '';
      buffer = buffer.slice(0, buffer.length - held.length).replace(/\r\n?/g, '\n');
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const frame = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let name = 'message';
        const data = [];
        for (const line of frame.split('\n')) {
          if (line === '' || line.startsWith(':')) {
            continue; // Keep-alive comments.
          }
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          let text = colon < 0 ? '' : line.slice(colon + 1);
          if (text.startsWith(' ')) {
            text = text.slice(1);
          }
          if (field === 'event') {
            name = text;
          } else if (field === 'data') {
            data.push(text);
          }
        }
        if (data.length > 0) {
          onFrame(name, data.join('\n'));
        }
      }
      buffer += held;
      if (buffer.length > 4 * 1024 * 1024) {
        throw new Error('the live stream sent a frame too large to read');
      }
    }
  }

  let missed = 0;

  function onFrame(name, data) {
    if (name === 'lagged') {
      missed += Number(data) || 0;
      setText('stream-state', `live, ${number.format(missed)} missed`, 'reconnecting');
      return;
    }
    if (name !== 'event') {
      return;
    }
    let delivered;
    try {
      delivered = JSON.parse(data);
    } catch (_) {
      return;
    }
    rates.count(delivered.topic);
    if (paused) {
      pending.push(delivered);
      if (pending.length > MAX_EVENTS) {
        pending.shift();
      }
      updatePauseButton();
    } else {
      addEvent(delivered, true);
    }
    if (delivered.topic === RECOMMENDATIONS_TOPIC) {
      addRecommendation(delivered, true);
    }
  }

  // ---------------------------------------------------------------- recent events

  /** The listed events by `topic/partition/offset`, and in display order (newest first). */
  const events = {
    byKey: new Map(),
    order: [],
    clear() {
      this.byKey.clear();
      this.order = [];
    },
  };
  let paused = false;
  const pending = [];

  const keyOf = (d) => `${d.topic}/${d.partition}/${d.offset}`;
  const timeOf = (d) => Date.parse(d.timestamp) || 0;

  /** Newer first: by time, then topic, then offset, as the server orders them. */
  function newer(a, b) {
    if (a.time !== b.time) {
      return a.time > b.time;
    }
    if (a.topic !== b.topic) {
      return a.topic > b.topic;
    }
    return a.offset > b.offset;
  }

  async function fillEvents(s) {
    try {
      const body = await api(s, `/kafka/events?limit=${MAX_EVENTS}`);
      if (session !== s) {
        return;
      }
      for (const delivered of body.events.slice().reverse()) {
        addEvent(delivered, false);
      }
      showError('events-error', null);
    } catch (error) {
      failed(s, error, 'events-error');
    }
  }

  function addEvent(delivered, live) {
    const key = keyOf(delivered);
    if (events.byKey.has(key)) {
      return;
    }
    const event = delivered.event || {};
    const entry = {
      key,
      time: timeOf(delivered),
      topic: String(delivered.topic),
      offset: Number(delivered.offset),
      text: `${delivered.topic} ${event.event_type || ''} ${event.entity_id || ''}`.toLowerCase(),
      element: eventElement(delivered, live),
    };
    let index = 0;
    while (index < events.order.length && !newer(entry, events.order[index])) {
      index += 1;
    }
    if (index >= MAX_EVENTS) {
      return; // Older than everything kept.
    }
    const list = $('event-list');
    list.insertBefore(entry.element, index < events.order.length ? events.order[index].element : null);
    events.order.splice(index, 0, entry);
    events.byKey.set(key, entry);
    entry.element.hidden = !matchesFilter(entry);
    while (events.order.length > MAX_EVENTS) {
      const dropped = events.order.pop();
      dropped.element.remove();
      events.byKey.delete(dropped.key);
    }
    updateCounts();
  }

  function eventElement(delivered, live) {
    const event = delivered.event || {};
    const item = $('event-template').content.firstElementChild.cloneNode(true);
    item.dataset.key = keyOf(delivered);
    item.dataset.topic = String(delivered.topic);
    item.dataset.eventType = String(event.event_type || '');
    item.dataset.entityId = String(event.entity_id || '');
    const time = item.querySelector('.ts');
    time.textContent = clock(delivered.timestamp);
    time.dateTime = String(delivered.timestamp);
    time.title = String(delivered.timestamp);
    item.querySelector('.topic').textContent = String(delivered.topic);
    item.querySelector('.type').textContent = String(event.event_type || '');
    item.querySelector('.entity').textContent = String(event.entity_id || '');
    item.querySelector('.json').textContent = JSON.stringify(delivered, null, 2);
    if (live) {
      item.classList.add('fresh');
    }
    return item;
  }

  function clock(timestamp) {
    const date = new Date(timestamp);
    if (Number.isNaN(date.getTime())) {
      return String(timestamp);
    }
    const pad = (n, width = 2) => String(n).padStart(width, '0');
    return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
  }

  function matchesFilter(entry) {
    const filter = $('event-filter').value.trim().toLowerCase();
    return !filter || entry.text.includes(filter);
  }

  function applyFilter() {
    for (const entry of events.order) {
      entry.element.hidden = !matchesFilter(entry);
    }
    updateCounts();
  }

  function updateCounts() {
    const shown = events.order.filter((entry) => !entry.element.hidden).length;
    $('events-count').textContent = events.order.length ? `${shown} of the last ${events.order.length}` : '';
  }

  function updatePauseButton() {
    const button = $('events-pause');
    button.setAttribute('aria-pressed', String(paused));
    button.textContent = paused ? `Resume${pending.length ? ` (${pending.length} new)` : ''}` : 'Pause';
  }

  function togglePause() {
    paused = !paused;
    if (!paused) {
      for (const delivered of pending.splice(0)) {
        addEvent(delivered, true);
      }
    }
    updatePauseButton();
  }

  // ---------------------------------------------------------------- rate chart

  /** Events per topic per second, for the last WINDOW seconds, counted as they arrive. */
  const rates = {
    series: new Map(),
    colors: new Map(),
    head: 0,
    clear() {
      this.series.clear();
      this.colors.clear();
      this.head = 0;
    },
    /** Moves the window so that its last slot is the current second. */
    advance(now = Math.floor(Date.now() / 1000)) {
      const shift = Math.min(now - this.head, WINDOW);
      if (shift > 0) {
        for (const counts of this.series.values()) {
          counts.splice(0, shift);
          counts.push(...new Array(shift).fill(0));
        }
      }
      this.head = Math.max(this.head, now);
    },
    count(topic) {
      this.advance();
      if (!this.series.has(topic)) {
        this.series.set(topic, new Array(WINDOW).fill(0));
      }
      this.series.get(topic)[WINDOW - 1] += 1;
    },
    /** The lines to draw: the busiest topics, then the rest summed. Each point is one complete second. */
    lines() {
      this.advance();
      const all = [...this.series.entries()]
        .map(([topic, counts]) => ({ topic, counts: counts.slice(0, WINDOW - 1) }))
        .map((line) => ({ ...line, total: line.counts.reduce((a, b) => a + b, 0) }))
        .filter((line) => line.total > 0);
      for (const [topic, counts] of this.series) {
        if (counts.every((c) => c === 0)) {
          this.series.delete(topic);
        }
      }
      all.sort((a, b) => b.total - a.total || (a.topic < b.topic ? -1 : 1));
      const lines = all.slice(0, MAX_LINES);
      // A topic keeps its colour while it is drawn; one that comes in takes a colour no drawn
      // topic holds, so no two lines look alike.
      const drawn = new Set(lines.map((line) => line.topic));
      for (const topic of [...this.colors.keys()]) {
        if (!drawn.has(topic)) {
          this.colors.delete(topic);
        }
      }
      const held = new Set(this.colors.values());
      for (const line of lines) {
        if (!this.colors.has(line.topic)) {
          const free = PALETTE.find((color) => !held.has(color)) || OTHER_COLOR;
          this.colors.set(line.topic, free);
          held.add(free);
        }
        line.color = this.colors.get(line.topic);
      }
      const rest = all.slice(MAX_LINES);
      if (rest.length) {
        const counts = new Array(WINDOW - 1).fill(0);
        for (const line of rest) {
          line.counts.forEach((c, i) => { counts[i] += c; });
        }
        lines.push({
          topic: `${rest.length} other topics`,
          counts,
          total: counts.reduce((a, b) => a + b, 0),
          color: OTHER_COLOR,
          other: true,
        });
      }
      return lines;
    },
  };

  function drawRates() {
    const canvas = $('rate-chart');
    if (!session || $('dashboard').hidden) {
      return;
    }
    const lines = rates.lines();
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    const g = canvas.getContext('2d');
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, width, height);

    const style = getComputedStyle(canvas);
    const muted = style.color;
    const pad = { left: 44, right: 12, top: 10, bottom: 22 };
    const plotW = Math.max(1, width - pad.left - pad.right);
    const plotH = Math.max(1, height - pad.top - pad.bottom);
    const peak = Math.max(1, ...lines.map((line) => Math.max(...line.counts)));
    const top = niceCeiling(peak);
    const x = (i) => pad.left + (i / (WINDOW - 2)) * plotW;
    const y = (v) => pad.top + plotH - (v / top) * plotH;

    g.font = `11px ${style.fontFamily || 'sans-serif'}`;
    g.fillStyle = muted;
    g.strokeStyle = muted;
    g.globalAlpha = 0.25;
    g.lineWidth = 1;
    for (const fraction of [0, 0.5, 1]) {
      const at = Math.round(y(top * fraction)) + 0.5;
      g.beginPath();
      g.moveTo(pad.left, at);
      g.lineTo(pad.left + plotW, at);
      g.stroke();
    }
    g.globalAlpha = 1;
    g.textAlign = 'right';
    g.textBaseline = 'middle';
    for (const fraction of [0, 0.5, 1]) {
      g.fillText(formatRate(top * fraction), pad.left - 6, y(top * fraction));
    }
    g.textBaseline = 'top';
    g.textAlign = 'left';
    g.fillText(`-${WINDOW} s`, pad.left, pad.top + plotH + 6);
    g.textAlign = 'center';
    g.fillText(`-${WINDOW / 2} s`, pad.left + plotW / 2, pad.top + plotH + 6);
    g.textAlign = 'right';
    g.fillText('now', pad.left + plotW, pad.top + plotH + 6);

    if (!lines.length) {
      g.textAlign = 'center';
      g.textBaseline = 'middle';
      g.fillText('no events in the last minute', pad.left + plotW / 2, pad.top + plotH / 2);
    }
    g.lineWidth = 1.75;
    g.lineJoin = 'round';
    for (const line of lines) {
      g.strokeStyle = line.color;
      g.setLineDash(line.other ? [4, 3] : []);
      g.beginPath();
      line.counts.forEach((count, i) => (i === 0 ? g.moveTo(x(i), y(count)) : g.lineTo(x(i), y(count))));
      g.stroke();
    }
    g.setLineDash([]);
    canvas.dataset.lines = String(lines.length);
    renderLegend(lines);
  }

  function niceCeiling(value) {
    const magnitude = 10 ** Math.floor(Math.log10(value));
    for (const step of [1, 2, 2.5, 5, 10]) {
      if (step * magnitude >= value) {
        return step * magnitude;
      }
    }
    return 10 * magnitude;
  }

  function formatRate(value) {
    return Number.isInteger(value) ? String(value) : value.toFixed(1);
  }

  function renderLegend(lines) {
    const items = lines.map((line) => {
      const item = document.createElement('li');
      item.dataset.testid = 'rate-topic';
      item.dataset.topic = line.topic;
      item.dataset.windowTotal = String(line.total);
      const swatch = document.createElement('span');
      swatch.className = 'swatch';
      swatch.style.background = line.color; // CSSOM, allowed by the CSP unlike a style attribute.
      const name = document.createElement('span');
      name.textContent = line.topic;
      const rate = document.createElement('span');
      rate.className = 'rate';
      rate.textContent = `${line.counts[line.counts.length - 1]}/s now, ${number.format(line.total)} in ${WINDOW} s`;
      item.append(swatch, name, rate);
      return item;
    });
    $('rate-legend').replaceChildren(...items);
  }

  // ---------------------------------------------------------------- accounts and groups

  const balances = new Map();

  function cell(text, className) {
    const td = document.createElement('td');
    td.textContent = text == null ? '' : String(text);
    if (className) {
      td.className = className;
    }
    return td;
  }

  function renderAccounts(body) {
    const rows = body.accounts.map((account) => {
      const row = document.createElement('tr');
      row.dataset.testid = 'account';
      row.dataset.accountId = String(account.account_id);
      const balance = cell(`${account.balance} ${account.currency || ''}`.trim(), 'num');
      balance.dataset.testid = 'balance';
      balance.dataset.balance = String(account.balance);
      const before = balances.get(account.account_id);
      if (before !== undefined && before !== account.balance) {
        row.classList.add('fresh');
      }
      balances.set(account.account_id, account.balance);
      row.append(
        cell(account.account_id),
        cell(account.customer_id),
        cell(account.account_type),
        cell(account.status),
        balance,
      );
      return row;
    });
    $('account-table').replaceChildren(...rows);
    $('accounts-empty').hidden = rows.length > 0;
  }

  function renderGroups(body) {
    const rows = [];
    for (const group of body.groups) {
      const row = document.createElement('tr');
      row.dataset.testid = 'group';
      row.dataset.group = String(group.group);
      const lag = cell(number.format(group.lag), group.lag > 0 ? 'num lagging' : 'num');
      lag.dataset.testid = 'group-lag';
      lag.dataset.lag = String(group.lag);
      const lagging = group.topics.filter((topic) => topic.lag > 0);
      const topics = cell(
        lagging.length
          ? lagging.map((topic) => `${topic.topic}: ${number.format(topic.lag)}`).join(', ')
          : `${group.topics.length} topics, caught up`,
        'group-topics',
      );
      const name = cell(group.consuming_here ? `${group.group} (consuming here)` : group.group);
      row.append(name, lag, topics);
      rows.push(row);
      const partitions = group.topics.flatMap((topic) => topic.partitions.map((p) => ({ topic: topic.topic, ...p })));
      if (partitions.length) {
        rows.push(partitionRow(group, partitions));
      }
    }
    $('group-table').replaceChildren(...rows);
    $('groups-total').textContent = `${number.format(body.count)} groups, total lag ${number.format(body.total_lag)}`;
  }

  /** A table's row of column titles. */
  function headerRow(titles) {
    const head = document.createElement('tr');
    for (const title of titles) {
      const th = document.createElement('th');
      th.textContent = title;
      head.append(th);
    }
    return head;
  }

  /** A row under a group's: its committed offset, end and lag per partition, each with a reset. */
  function partitionRow(group, partitions) {
    const table = document.createElement('table');
    table.className = 'partitions';
    table.append(headerRow(['Topic', 'Partition', 'Offset', 'End', 'Lag', '']));
    for (const p of partitions) {
      const row = document.createElement('tr');
      row.dataset.testid = 'group-partition';
      row.dataset.group = String(group.group);
      row.dataset.topic = String(p.topic);
      row.dataset.partition = String(p.partition);
      const offset = cell(number.format(p.offset), 'num');
      offset.dataset.testid = 'group-offset';
      offset.dataset.offset = String(p.offset);
      const lag = cell(number.format(p.lag), p.lag > 0 ? 'num lagging' : 'num');
      lag.dataset.testid = 'partition-lag';
      lag.dataset.lag = String(p.lag);
      const pick = document.createElement('button');
      pick.type = 'button';
      pick.className = 'small';
      pick.dataset.testid = 'reset-pick';
      pick.textContent = 'Reset…';
      pick.addEventListener('click', () => {
        $('reset-group').value = String(group.group);
        $('reset-topic').value = String(p.topic);
        $('reset-partition').value = String(p.partition);
        $('reset-value').focus();
      });
      const action = document.createElement('td');
      action.append(pick);
      row.append(cell(p.topic), cell(p.partition, 'num'), offset, cell(p.latest == null ? '–' : number.format(p.latest), 'num'), lag, action);
      table.append(row);
    }
    // Collapsed unless opened: a group may commit in many partitions. The refresh keeps it open.
    const name = String(group.group);
    const details = document.createElement('details');
    details.dataset.testid = 'group-partitions';
    details.dataset.group = name;
    details.open = openGroups.has(name);
    details.addEventListener('toggle', () => {
      if (details.open) {
        openGroups.add(name);
      } else {
        openGroups.delete(name);
      }
    });
    const summary = document.createElement('summary');
    summary.textContent = `offsets of ${partitions.length} partitions`;
    const scroll = document.createElement('div');
    scroll.className = 'scroll';
    scroll.append(table);
    details.append(summary, scroll);
    const row = document.createElement('tr');
    row.className = 'group-partitions';
    const td = document.createElement('td');
    td.colSpan = 3;
    td.append(details);
    row.append(td);
    return row;
  }

  /** The groups whose partitions are shown. */
  const openGroups = new Set();

  // ---------------------------------------------------------------- topics, browser, produce, reset

  /** Fills the topic lists, keeping what is selected. */
  function renderTopics(body) {
    const names = body.topics.map((topic) => String(topic.name)).sort();
    for (const id of ['browse-topic', 'produce-topic']) {
      const select = $(id);
      const chosen = select.value;
      const current = [...select.options].map((option) => option.value);
      if (current.length === names.length && current.every((name, i) => name === names[i])) {
        continue;
      }
      select.replaceChildren(...names.map((name) => {
        const option = document.createElement('option');
        option.value = name;
        option.textContent = name;
        return option;
      }));
      if (names.includes(chosen)) {
        select.value = chosen;
      }
    }
  }

  /** The browse asked for: its topic and query, and the cursor of its last page. */
  const browsing = { topic: null, query: null, next: null };

  function browseQuery() {
    const query = new URLSearchParams();
    const fields = {
      partition: 'browse-partition', from_offset: 'browse-offset', key: 'browse-key', event_type: 'browse-type',
      where: 'browse-where', since: 'browse-since', until: 'browse-until', limit: 'browse-limit',
    };
    for (const [name, id] of Object.entries(fields)) {
      const value = $(id).value.trim();
      if (value) {
        query.set(name, value);
      }
    }
    query.set('order', $('browse-order').value);
    return query;
  }

  function messagesPath(topic, query) {
    return `/topics/${encodeURIComponent(topic)}/messages?${query}`;
  }

  /** Reads a page of the browse: the first one (`more` false) or the one after the cursor. */
  async function browse(more) {
    const s = session;
    if (!s) {
      return;
    }
    if (!more) {
      browsing.topic = $('browse-topic').value;
      browsing.query = browseQuery();
      browsing.next = null;
    }
    const query = new URLSearchParams(browsing.query);
    if (more && browsing.next) {
      query.set('from_partition', String(browsing.next.partition));
      query.set('from_offset', String(browsing.next.offset));
    }
    $('browse-submit').disabled = true;
    try {
      const body = await api(s, messagesPath(browsing.topic, query));
      if (session !== s) {
        return;
      }
      const items = body.messages.map(recordElement);
      if (more) {
        $('browse-list').append(...items);
      } else {
        $('browse-list').replaceChildren(...items);
      }
      browsing.next = body.next;
      $('browse-next').disabled = !body.next;
      const shown = $('browse-list').children.length;
      const summary = $('browse-summary');
      summary.dataset.count = String(shown);
      summary.textContent = `${number.format(shown)} messages shown; this page read ${number.format(body.scanned)} records`
        + (body.next ? `; more from partition ${body.next.partition}, offset ${body.next.offset}` : '; end of the topic');
      showError('browse-error', null);
    } catch (error) {
      failed(s, error, 'browse-error');
    } finally {
      $('browse-submit').disabled = false;
    }
  }

  function recordElement(message) {
    const event = message.event || {};
    const item = $('record-template').content.firstElementChild.cloneNode(true);
    item.dataset.topic = String(message.topic);
    item.dataset.partition = String(message.partition);
    item.dataset.offset = String(message.offset);
    item.dataset.key = message.key == null ? '' : String(message.key);
    item.dataset.eventType = String(event.event_type || '');
    item.dataset.eventId = String(event.event_id || '');
    item.querySelector('.place').textContent = `${message.partition}:${message.offset}`;
    const time = item.querySelector('.ts');
    time.textContent = clock(message.timestamp);
    time.dateTime = String(message.timestamp);
    time.title = String(message.timestamp);
    item.querySelector('.key').textContent = message.key == null ? '(no key)' : String(message.key);
    if (message.invalid) {
      item.classList.add('invalid');
      item.querySelector('.type').textContent = 'not an event';
      item.querySelector('.entity').textContent = String(message.invalid.reason || '');
      item.querySelector('.record-actions').hidden = true;
    } else {
      item.querySelector('.type').textContent = String(event.event_type || '');
      item.querySelector('.entity').textContent = String(event.entity_id || '');
    }
    item.querySelector('.json').textContent = JSON.stringify(message, null, 2);
    item.querySelector('.reproduce').addEventListener('click', () => reproduce(message, item.querySelector('.keep-id').checked));
    return item;
  }

  async function reproduce(message, keepEventId) {
    const s = session;
    if (!s) {
      return;
    }
    const path = `/topics/${encodeURIComponent(message.topic)}/messages/${message.partition}/${message.offset}/reproduce`;
    try {
      const answer = await send(s, 'POST', path, { keep_event_id: keepEventId });
      const summary = $('browse-summary');
      summary.dataset.reproduced = `${answer.partition}:${answer.offset}`;
      await browse(false);
      summary.textContent = `Re-produced ${message.partition}:${message.offset} as ${answer.topic} `
        + `${answer.partition}:${answer.offset ?? '(in the outbox)'}, event_id ${answer.event_id}. ${summary.textContent}`;
    } catch (error) {
      failed(s, error, 'browse-error');
    }
  }

  /** Downloads the browse as JSON lines: fetched with the token, saved from memory. */
  async function exportLines() {
    const s = session;
    if (!s) {
      return;
    }
    const topic = $('browse-topic').value;
    const query = browseQuery();
    query.set('format', 'jsonl');
    try {
      const response = await fetch(messagesPath(topic, query), {
        headers: { Authorization: `Bearer ${s.token}`, Accept: 'application/x-ndjson' },
        signal: s.abort.signal,
        cache: 'no-store',
      });
      if (response.status === 401 || response.status === 403) {
        throw new AuthError(response.status, await errorText(response));
      }
      if (!response.ok) {
        throw new Error(await errorText(response));
      }
      const text = await response.text();
      const url = URL.createObjectURL(new Blob([text], { type: 'application/x-ndjson' }));
      const link = document.createElement('a');
      link.href = url;
      link.download = `${topic}.jsonl`;
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
      const lines = text.split('\n').filter(Boolean).length;
      const next = response.headers.get('x-eventbus-next');
      $('browse-summary').textContent = `Exported ${number.format(lines)} messages as ${topic}.jsonl`
        + (next ? `; more from ${next}` : '');
      showError('browse-error', null);
    } catch (error) {
      failed(s, error, 'browse-error');
    }
  }

  async function produce() {
    const s = session;
    if (!s) {
      return;
    }
    let event;
    try {
      event = JSON.parse($('produce-event').value);
    } catch (error) {
      showError('produce-error', `The event is not JSON: ${error.message}`);
      return;
    }
    const topic = $('produce-topic').value;
    const body = { event };
    const key = $('produce-key').value.trim();
    if (key) {
      body.key = key;
    }
    try {
      const answer = await send(s, 'POST', `/topics/${encodeURIComponent(topic)}/messages`, body);
      const result = $('produce-result');
      result.dataset.partition = String(answer.partition);
      result.dataset.offset = String(answer.offset);
      result.dataset.eventId = String(answer.event_id);
      result.textContent = `Produced to ${answer.topic}, partition ${answer.partition}, offset `
        + `${answer.offset ?? '(in the outbox)'}; event_id ${answer.event_id}`;
      showError('produce-error', null);
    } catch (error) {
      failed(s, error, 'produce-error');
    }
  }

  async function resetOffsets() {
    const s = session;
    if (!s) {
      return;
    }
    const group = $('reset-group').value.trim();
    const body = { topic: $('reset-topic').value.trim() };
    const partition = $('reset-partition').value.trim();
    if (partition) {
      if (!/^[0-9]+$/.test(partition)) {
        showError('reset-error', 'The partition is a number from 0, or empty for every partition');
        return;
      }
      body.partition = Number(partition);
    }
    const to = $('reset-to').value;
    body.to = to === 'offset' || to === 'time' ? `${to}:${$('reset-value').value.trim()}` : to;
    try {
      const answer = await send(s, 'POST', `/consumer-groups/${encodeURIComponent(group)}/offsets`, body);
      const offsets = answer.partitions.map((p) => `${p.partition}: ${p.offset} (lag ${p.lag})`).join(', ');
      $('reset-result').textContent = `Reset ${answer.group} in ${answer.topic} to ${answer.to}: ${offsets}`;
      showError('reset-error', null);
      renderGroups(await api(s, '/consumer-groups'));
    } catch (error) {
      $('reset-result').textContent = '';
      failed(s, error, 'reset-error');
    }
  }

  // ---------------------------------------------------------------- recommendations

  const recommendations = new Map();

  async function fillRecommendations(s) {
    try {
      const body = await api(s, `/kafka/events?topic=${encodeURIComponent(RECOMMENDATIONS_TOPIC)}&limit=50`);
      if (session !== s) {
        return;
      }
      for (const delivered of body.events.slice().reverse()) {
        addRecommendation(delivered, false);
      }
      showError('recommendations-error', null);
    } catch (error) {
      failed(s, error, 'recommendations-error');
    }
  }

  const words = (text) => {
    const spaced = String(text || '').replace(/_/g, ' ');
    return spaced.charAt(0).toUpperCase() + spaced.slice(1);
  };

  function addRecommendation(delivered, live) {
    const event = delivered.event || {};
    const data = event.data || {};
    const id = String(data.recommendation_id || event.event_id || keyOf(delivered));
    if (recommendations.has(id)) {
      return;
    }
    const item = document.createElement('li');
    item.className = live ? 'recommendation fresh' : 'recommendation';
    item.dataset.testid = 'recommendation';
    item.dataset.recommendationId = id;
    const action = document.createElement('span');
    action.className = 'action';
    action.textContent = words(data.action || event.event_type);
    const subject = document.createElement('span');
    subject.className = 'subject';
    subject.textContent = `${data.subject_type || ''} ${data.subject_id || event.entity_id || ''} · ${data.rule || ''}`;
    const time = document.createElement('time');
    time.textContent = clock(delivered.timestamp);
    time.dateTime = String(delivered.timestamp);
    const reason = document.createElement('span');
    reason.className = 'reason';
    reason.textContent = String(data.reason || '');
    item.append(action, subject, reason, time);
    const list = $('recommendation-list');
    list.prepend(item);
    recommendations.set(id, item);
    while (list.children.length > MAX_RECOMMENDATIONS) {
      const last = list.lastElementChild;
      recommendations.delete(last.dataset.recommendationId);
      last.remove();
    }
    $('recommendations-empty').hidden = true;
  }

  // ---------------------------------------------------------------- dead letters

  /** Letters one refresh lists, at most. */
  const LETTERS_SHOWN = 200;
  /** Expanded letters whose details a refresh reads again, at most. */
  const MAX_OPEN_LETTERS = 10;
  /** Per-letter results an action lists, at most. */
  const MAX_OUTCOMES = 100;

  const letters = {
    /** The filter of the last Find (null: the form's, at the first refresh). */
    filter: null,
    /** What the table shows: its filter and how many letters match it, for the bulk actions. */
    shown: null,
    /** The expanded letters: id → details, once read. */
    open: new Map(),
    /** The refresh under way, if any: one at a time; `again` asks for one more after it. */
    running: null,
    again: false,
    /** An action under way: one at a time. */
    acting: false,
    clear() {
      this.filter = null;
      this.shown = null;
      this.open.clear();
      this.running = null;
      this.again = false;
      this.acting = false;
    },
  };

  /** The filter in the form, as the API takes it. */
  function letterFilter() {
    const filter = {};
    const fields = { topic: 'dlq-topic', group: 'dlq-group', error: 'dlq-error-text', since: 'dlq-since' };
    for (const [name, id] of Object.entries(fields)) {
      const value = $(id).value.trim();
      if (value) {
        filter[name] = value;
      }
    }
    filter.state = $('dlq-state').value;
    return filter;
  }

  const letterCount = (n) => `${number.format(n)} dead letter${n === 1 ? '' : 's'}`;

  function describeFilter(filter) {
    const parts = Object.entries(filter).filter(([name]) => name !== 'state').map(([name, value]) => `${name} "${value}"`);
    return `state ${filter.state}${parts.length ? `, ${parts.join(', ')}` : ''}`;
  }

  /**
   * Reads the letters of the current filter, and the details of the expanded ones, into the
   * table. Never two at once: a call while one runs makes that one go once more, and answers
   * when it is done.
   */
  function refreshLetters(s) {
    if (letters.running) {
      letters.again = true;
      return letters.running;
    }
    const run = (async () => {
      try {
        do {
          letters.again = false;
          await loadLetters(s);
        } while (letters.again && session === s);
      } finally {
        if (letters.running === run) {
          letters.running = null;
        }
      }
    })();
    letters.running = run;
    return run;
  }

  async function loadLetters(s) {
    if (!letters.filter) {
      letters.filter = letterFilter();
    }
    const filter = letters.filter;
    const query = new URLSearchParams(filter);
    query.set('limit', String(LETTERS_SHOWN));
    const body = await api(s, `/dead-letters?${query}`);
    if (session !== s) {
      return;
    }
    const listed = new Set(body.letters.map((letter) => String(letter.id)));
    const reread = [...letters.open.keys()].filter((id) => listed.has(id)).slice(0, MAX_OPEN_LETTERS);
    for (const id of reread) {
      try {
        const details = await api(s, `/dead-letters/${encodeURIComponent(id)}`);
        if (session !== s) {
          return;
        }
        if (letters.open.has(id)) {
          letters.open.set(id, details);
        }
      } catch (error) {
        if (error instanceof AuthError || s.abort.signal.aborted) {
          throw error;
        }
        if (letters.open.has(id)) {
          letters.open.set(id, { failed: String(error.message || error) });
        }
      }
    }
    if (letters.filter !== filter) {
      return; // Found again meanwhile: the next round shows it.
    }
    renderLetters(body, filter);
  }

  function renderLetters(body, filter) {
    const rows = [];
    for (const letter of body.letters) {
      rows.push(letterRow(letter));
      const id = String(letter.id);
      if (letters.open.has(id)) {
        rows.push(letterDetailRow(letter, letters.open.get(id)));
      }
    }
    $('dlq-table').replaceChildren(...rows);
    $('dlq-empty').hidden = body.letters.length > 0;
    const count = $('dlq-count');
    count.dataset.matching = String(body.matching);
    count.textContent = body.matching > body.showing
      ? `${number.format(body.showing)} of ${number.format(body.matching)} matching, oldest first`
      : `${number.format(body.matching)} matching`;
    letters.shown = { filter, matching: Number(body.matching) };
    for (const id of ['dlq-redrive-all', 'dlq-discard-all']) {
      $(id).disabled = letters.acting || !(body.matching > 0);
    }
  }

  /** How long ago: `42 s`, `5 min`, `3 h 12 min`, `2 d 4 h`. */
  function age(timestamp) {
    const ms = Date.now() - Date.parse(timestamp);
    if (!Number.isFinite(ms)) {
      return String(timestamp);
    }
    const seconds = Math.max(0, Math.floor(ms / 1000));
    if (seconds < 60) {
      return `${seconds} s`;
    }
    if (seconds < 3600) {
      return `${Math.floor(seconds / 60)} min`;
    }
    if (seconds < 86400) {
      return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`;
    }
    return `${Math.floor(seconds / 86400)} d ${Math.floor((seconds % 86400) / 3600)} h`;
  }

  function stateText(letter) {
    switch (letter.state) {
      case 'retrying':
        return `retrying (stage ${letter.stage}, due ${clock(letter.due)})`;
      case 'parked':
        return `parked, behind ${letter.behind}`;
      case 'redrive_requested':
        return 'redrive requested';
      case 'resolved':
        return `resolved (${letter.outcome})`;
      default:
        return String(letter.state);
    }
  }

  function placeText(place) {
    return place ? `${place.topic} ${place.partition}:${place.offset}` : '–';
  }

  function smallButton(text, testid, onClick) {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'small';
    button.dataset.testid = testid;
    button.textContent = text;
    button.addEventListener('click', onClick);
    return button;
  }

  function letterRow(letter) {
    const id = String(letter.id);
    const row = document.createElement('tr');
    row.dataset.testid = 'dead-letter';
    row.dataset.id = id;
    row.dataset.state = String(letter.state);
    row.dataset.group = letter.group == null ? '' : String(letter.group);
    row.dataset.topic = letter.place ? String(letter.place.topic) : '';
    row.dataset.dlqTopic = String(letter.dlq_topic);
    row.dataset.eventId = letter.event_id == null ? '' : String(letter.event_id);
    row.dataset.redriveCount = String(letter.redrive_count);
    row.className = `dlq-${letter.state}`;
    const state = cell(stateText(letter), 'dlq-state');
    state.dataset.testid = 'dlq-state-cell';
    const error = cell(`${letter.error_kind}: ${letter.error}`, 'dlq-error-text');
    error.dataset.testid = 'dlq-letter-error';
    error.title = String(letter.error);
    const redrives = cell(number.format(letter.redrive_count), 'num');
    redrives.dataset.testid = 'dlq-redrive-count';
    const when = cell(age(letter.first_at));
    when.title = `first ${letter.first_at}, last ${letter.last_at}`;
    const actions = document.createElement('td');
    actions.className = 'dlq-actions';
    const expanded = letters.open.has(id);
    const show = smallButton(expanded ? 'Hide' : 'Show', 'dlq-show', () => toggleLetter(id));
    show.setAttribute('aria-expanded', String(expanded));
    actions.append(show);
    if (letter.state !== 'resolved') {
      if (letter.state !== 'parked') {
        const redrive = smallButton('Redrive', 'dlq-redrive', () => actOnLetters('redrive', { ids: [id] }));
        if (letter.state === 'redrive_requested') {
          redrive.disabled = true;
          redrive.title = 'a redrive is already requested';
        }
        actions.append(redrive);
      }
      actions.append(smallButton('Discard', 'dlq-discard', () => actOnLetters('discard', { ids: [id] })));
    }
    for (const button of actions.querySelectorAll('[data-testid="dlq-redrive"], [data-testid="dlq-discard"]')) {
      button.disabled = button.disabled || letters.acting;
    }
    row.append(
      state,
      cell(letter.group == null ? '–' : letter.group),
      cell(placeText(letter.place)),
      cell(letter.key == null ? '(no key)' : letter.key),
      error,
      redrives,
      when,
      actions,
    );
    return row;
  }

  function fact(list, term, value) {
    const dt = document.createElement('dt');
    dt.textContent = term;
    const dd = document.createElement('dd');
    dd.textContent = value == null ? '–' : String(value);
    list.append(dt, dd);
  }

  /** The row under an expanded letter: its facts, its history and its original. */
  function letterDetailRow(letter, details) {
    const row = document.createElement('tr');
    row.className = 'dlq-detail';
    row.dataset.testid = 'dead-letter-detail';
    row.dataset.id = String(letter.id);
    const td = document.createElement('td');
    td.colSpan = 8;
    row.append(td);
    if (!details) {
      td.append(Object.assign(document.createElement('p'), { className: 'hint', textContent: 'Reading…' }));
      return row;
    }
    if (details.failed) {
      const message = document.createElement('p');
      message.className = 'message error';
      message.textContent = details.failed;
      td.append(message);
      return row;
    }
    const facts = document.createElement('dl');
    facts.className = 'dlq-facts';
    fact(facts, 'Letter', details.id);
    fact(facts, 'Dead-letter topic', `${details.dlq_topic} offset ${details.dlq_offset}`);
    fact(facts, 'Event', `${details.event_type || '–'} ${details.event_id || ''}`.trim());
    fact(facts, 'Error', `${details.error_kind}: ${details.error}`);
    fact(facts, 'Attempts', details.attempts);
    fact(facts, 'Sequenced', details.sequenced ? 'yes' : 'no');
    fact(facts, 'First', details.first_at);
    fact(facts, 'Last', details.last_at);

    const historyTitle = document.createElement('h3');
    historyTitle.textContent = 'History';
    const history = document.createElement('table');
    history.className = 'dlq-history';
    history.dataset.testid = 'dlq-history';
    history.append(headerRow(['At', 'What', 'Who', 'From', 'Error', 'DLQ offset']));
    for (const entry of details.history || []) {
      const line = document.createElement('tr');
      line.dataset.testid = 'dlq-history-entry';
      line.dataset.event = String(entry.event);
      line.dataset.actor = entry.actor == null ? '' : String(entry.actor);
      const at = cell(clock(entry.at));
      at.title = String(entry.at);
      line.append(
        at,
        cell(entry.event),
        cell(entry.actor == null ? '–' : entry.actor),
        cell(entry.address == null ? '–' : entry.address),
        cell(entry.error == null ? '' : entry.error),
        cell(entry.dlq_offset, 'num'),
      );
      history.append(line);
    }
    const originalTitle = document.createElement('h3');
    originalTitle.textContent = 'Original';
    const original = document.createElement('pre');
    original.className = 'json';
    original.dataset.testid = 'dlq-original';
    original.textContent = details.original == null ? '(not kept)' : JSON.stringify(details.original, null, 2);
    td.append(facts, historyTitle, history, originalTitle, original);
    return row;
  }

  async function toggleLetter(id) {
    const s = session;
    if (!s) {
      return;
    }
    if (letters.open.has(id)) {
      letters.open.delete(id);
    } else {
      letters.open.set(id, null);
    }
    // Shown at once (collapsed, or waiting for the details), then read.
    for (const row of $('dlq-table').querySelectorAll('[data-testid="dead-letter-detail"]')) {
      if (row.dataset.id === id && !letters.open.has(id)) {
        row.remove();
      }
    }
    for (const row of $('dlq-table').querySelectorAll('[data-testid="dead-letter"]')) {
      if (row.dataset.id === id) {
        const show = row.querySelector('[data-testid="dlq-show"]');
        show.textContent = letters.open.has(id) ? 'Hide' : 'Show';
        show.setAttribute('aria-expanded', String(letters.open.has(id)));
      }
    }
    if (letters.open.has(id)) {
      await findLetters(s, false);
    }
  }

  /** Refreshes the table now, with the form's filter when `apply`. */
  async function findLetters(s, apply) {
    if (apply) {
      letters.filter = letterFilter();
    }
    try {
      await refreshLetters(s);
      showError('dlq-error', null);
    } catch (error) {
      failed(s, error, 'dlq-error');
    }
  }

  function clearLetterOutcome() {
    $('dlq-outcome').hidden = true;
    $('dlq-outcome-summary').textContent = '';
    $('dlq-outcome-list').replaceChildren();
    showError('dlq-action-error', null);
  }

  function showLetterOutcome(answer) {
    const results = answer.results || [];
    const summary = $('dlq-outcome-summary');
    summary.dataset.action = String(answer.action);
    summary.dataset.requested = String(answer.requested);
    summary.textContent = `${words(answer.action)}: ${number.format(answer.requested)} of `
      + `${letterCount(results.length)} requested`;
    const items = results.slice(0, MAX_OUTCOMES).map((result) => {
      const item = document.createElement('li');
      item.dataset.testid = 'dlq-outcome-item';
      item.dataset.id = String(result.id);
      item.dataset.requested = String(Boolean(result.requested));
      item.className = result.requested ? 'requested' : 'not-requested';
      item.textContent = result.requested
        ? `${result.id}: requested`
        : `${result.id}: not requested: ${result.reason || 'no reason given'}`;
      return item;
    });
    if (results.length > MAX_OUTCOMES) {
      const more = document.createElement('li');
      more.textContent = `and ${number.format(results.length - MAX_OUTCOMES)} more`;
      items.push(more);
    }
    $('dlq-outcome-list').replaceChildren(...items);
    $('dlq-outcome').hidden = false;
  }

  function setActing(acting) {
    letters.acting = acting;
    for (const button of document.querySelectorAll(
      '#dlq-table [data-testid="dlq-redrive"], #dlq-table [data-testid="dlq-discard"], #dlq-redrive-all, #dlq-discard-all',
    )) {
      button.disabled = acting || (button.dataset.testid === 'dlq-redrive'
        && button.closest('tr').dataset.state === 'redrive_requested');
    }
    if (!acting && letters.shown) {
      for (const id of ['dlq-redrive-all', 'dlq-discard-all']) {
        $(id).disabled = !(letters.shown.matching > 0);
      }
    }
  }

  /** Posts `action` (redrive or discard) for `selection` ({ids} or {filter}); shows what came of it. */
  async function actOnLetters(action, selection) {
    const s = session;
    if (!s || letters.acting) {
      return;
    }
    setActing(true);
    clearLetterOutcome();
    try {
      showLetterOutcome(await send(s, 'POST', `/dead-letters/${action}`, selection));
    } catch (error) {
      if (!failed(s, error, 'dlq-action-error')) {
        return;
      }
    } finally {
      if (session === s) {
        setActing(false);
      }
    }
    await findLetters(s, false);
  }

  /** Redrives or discards every letter the table's filter matches, once confirmed. */
  function actOnMatching(action) {
    const shown = letters.shown;
    if (!session || !shown || letters.acting) {
      return;
    }
    const verb = action === 'redrive' ? 'Redrive' : 'Discard';
    const question = `${verb} all ${letterCount(shown.matching)} matching ${describeFilter(shown.filter)}?`;
    if (!window.confirm(question)) {
      return;
    }
    actOnLetters(action, { filter: shown.filter });
  }

  // ---------------------------------------------------------------- start

  function start() {
    $('token-form').addEventListener('submit', (event) => {
      event.preventDefault();
      const token = $('token-input').value.trim();
      if (token) {
        signIn(token);
      }
    });
    $('forget-token').addEventListener('click', () => signOut(null));
    $('event-filter').addEventListener('input', applyFilter);
    $('events-pause').addEventListener('click', togglePause);
    $('browse-form').addEventListener('submit', (event) => {
      event.preventDefault();
      browse(false);
    });
    $('browse-next').addEventListener('click', () => browse(true));
    $('browse-export').addEventListener('click', exportLines);
    $('produce-form').addEventListener('submit', (event) => {
      event.preventDefault();
      produce();
    });
    $('reset-form').addEventListener('submit', (event) => {
      event.preventDefault();
      resetOffsets();
    });
    $('dlq-form').addEventListener('submit', (event) => {
      event.preventDefault();
      if (session) {
        findLetters(session, true);
      }
    });
    $('dlq-state').addEventListener('change', () => {
      if (session) {
        findLetters(session, true);
      }
    });
    $('dlq-redrive-all').addEventListener('click', () => actOnMatching('redrive'));
    $('dlq-discard-all').addEventListener('click', () => actOnMatching('discard'));
    setInterval(drawRates, 1000);
    window.addEventListener('resize', drawRates);
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) {
      signIn(token);
    } else {
      $('token-input').focus();
    }
  }

  start();
})();
