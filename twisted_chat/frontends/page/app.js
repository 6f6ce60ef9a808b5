/*
 * twisted-chat browser client.
 *
 * Speaks the WebSocket "json mode" of docs/protocol.md (subprotocol
 * `chat.json`). No framework, no build step, no inline code (the page is
 * served under `Content-Security-Policy: default-src 'self'`).
 *
 * Rules this file sticks to:
 *  - user data is only ever put in the page as text (textContent, text
 *    nodes, attributes via setAttribute), never parsed as HTML;
 *  - a room message is rendered at most once: every view keeps the set of
 *    "epoch:id" keys it has rendered, and the highest id seen per epoch,
 *    which is what a reconnect sends back in `hello.since`;
 *  - while the connection is down nothing is queued: Send is disabled and
 *    the text stays in the box; messages that were in flight when the
 *    connection dropped are checked against the resumed history and, if
 *    not found, marked "not delivered" with a Retry button (same `ref`);
 *  - a join's or resume's history the server could not read (`unavailable`)
 *    leaves a hole, fetched with a `history` request once the first live
 *    message shows where it ends (noteHole, fillHole).
 *
 * Test hooks: <body data-state="connecting|online|offline">, and every
 * rendered chat message has data-id, data-room (and data-epoch).
 */
'use strict';

(() => {
  // ---------------------------------------------------------------- setup

  const $ = (id) => document.getElementById(id);
  const el = {
    body: document.body,
    status: $('status'), retryNow: $('retry-now'),
    title: $('view-title'), sub: $('view-sub'),
    toggle: $('sidebar-toggle'), toggleBadge: $('toggle-badge'),
    sidebar: $('sidebar'), sidebarClose: $('sidebar-close'), backdrop: $('backdrop'), meSlot: $('me-slot'),
    roomList: $('room-list'), privatePanel: $('private-panel'), privateList: $('private-list'),
    joinForm: $('join-form'), roomInput: $('room-input'), roomError: $('room-error'),
    memberList: $('member-list'), memberCount: $('member-count'),
    login: $('login'), nickForm: $('nick-form'), nick: $('nick'),
    nickButton: $('nick-button'), nickError: $('nick-error'),
    views: $('views'), noView: $('no-view'),
    composer: $('composer'), message: $('message'), send: $('send'), hint: $('composer-hint'),
    typing: $('typing'), context: $('compose-context'), contextText: $('compose-context-text'),
    contextCancel: $('compose-cancel'),
    searchForm: $('search-form'), searchInput: $('search-input'),
    searchSummary: $('search-summary'), searchResults: $('search-results'),
  };

  const STORE_NICK = 'twisted-chat.nick';
  // per nick: the secret that proves we own it (for our private history),
  // and the highest private message id we have shown
  const tokenKey = (nick) => 'twisted-chat.token.' + nick.toLowerCase();
  const privateSeenKey = (nick) => 'twisted-chat.private-seen.' + nick.toLowerCase();
  const BACKOFF_BASE = 1000;      // ms, first reconnect waits up to this
  const BACKOFF_CAP = 20000;      // ms, never wait longer than this
  const BACKOFF_MIN = 250;        // ms, do not hammer even with full jitter
  const HANDSHAKE_TIMEOUT = 10000; // ms from connecting to `welcome`
  const NICK_TAKEN_RETRIES = 4;   // on reconnect our old connection may linger
  const GROUP_WINDOW = 5 * 60 * 1000; // consecutive messages grouped within 5 min
  const ROOM_RE = /^#?([A-Za-z0-9_-]{1,32})$/;
  const TYPING_EVERY = 3000;      // ms: repeat "typing active" at most this often
  const TYPING_EXPIRES = 8000;    // ms: forget a typist the server did not end
  const QUOTE_LENGTH = 60;        // characters of a message quoted in a reply
  const FILL_EVERY = 5000;        // ms: ask for a hole's messages at most this often
  const FILL_MAX = 200;           // the server's cap on a history request's limit
  const JOIN_HISTORY = 50;        // messages a join shows (a history request's default)
  // the reactions offered, with their names for screen readers
  const REACTIONS = [['👍', 'thumbs up'], ['❤️', 'heart'], ['😂', 'laughing'], ['🎉', 'party'],
    ['😮', 'surprised'], ['😢', 'sad']];

  const state = {
    ws: null,
    status: 'offline',
    welcomed: false,          // the current socket got its `welcome`
    everWelcomed: false,      // false until the first welcome: the login screen
    stopped: true,            // no automatic reconnect (waiting for the user)
    attempt: 0,               // consecutive failed attempts, for the backoff
    timer: 0, tick: 0, handshakeTimer: 0, retryAt: 0, retryNote: '',
    nickRetries: 0,
    nick: null,               // our nick as the server knows it
    wantedNick: '',           // nick to send in the next hello ('' = guest)
    nickChosen: false,        // the nick came from the user (remember it)
    views: new Map(),         // key ('#room' or '@nick') -> view
    current: null,            // key of the view on screen
    switchTo: null,           // room key to show once its `join` arrives
    pending: new Map(),       // ref -> our unconfirmed say/msg
    requests: new Map(),      // ref -> kind, for join/part/nick requests
    lastNickSource: 'command', lastJoinSource: 'command',  // 'form' or 'command'
    seenPrivate: new Set(),   // "id:time" of private messages rendered
    ackedPrivate: new Set(),  // private ids we rendered (to match acks)
    refSeq: 0,
    owner: false,             // this connection owns the nick (read markers are kept)
    compose: null,            // {mode: 'reply'|'edit', viewKey, id, from, text}
    typingRoom: null, typingSentAt: 0,   // our own "typing active" last sent
    jumpTo: null,             // {key, id}: a search result waiting for its history
  };
  const refPrefix = Math.random().toString(36).slice(2, 8);
  const nextRef = () => refPrefix + '-' + (++state.refSeq);

  function storageGet(key) {
    try { return localStorage.getItem(key); } catch (e) { return null; }
  }
  function storageSet(key, value) {
    try { localStorage.setItem(key, value); } catch (e) { /* private mode */ }
  }

  const sameNick = (a, b) => typeof a === 'string' && typeof b === 'string' && a.toLowerCase() === b.toLowerCase();
  const isMe = (nick) => sameNick(nick, state.nick);
  const normalizeRoom = (name) => {
    const m = ROOM_RE.exec(String(name || '').trim());
    return m ? '#' + m[1].toLowerCase() : null;
  };
  const sortNicks = (list) => list.slice().sort((a, b) => a.toLowerCase().localeCompare(b.toLowerCase()));

  // ---------------------------------------------------------------- small DOM helpers

  /** Create an element with a class and (text) content; never parses HTML. */
  function h(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  /** Server times are ms since the epoch; tolerate seconds too. */
  function toDate(t) {
    const n = Number(t);
    if (!Number.isFinite(n) || n <= 0) return new Date();
    return new Date(n < 1e11 ? n * 1000 : n);
  }

  function timeElement(t) {
    const d = toDate(t);
    const node = h('time', 'ts',
      String(d.getHours()).padStart(2, '0') + ':' + String(d.getMinutes()).padStart(2, '0'));
    node.dateTime = d.toISOString();
    node.title = d.toLocaleString(undefined, { dateStyle: 'full', timeStyle: 'medium' });
    return node;
  }

  /** A stable colour class for a nick. */
  function nickClass(nick) {
    let hash = 0;
    for (const ch of String(nick).toLowerCase()) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
    return 'nc' + (hash % 8);
  }

  /** Append text to `parent`, turning http(s) URLs into safe links. */
  function appendRichText(parent, text) {
    const re = /\bhttps?:\/\/[^\s<>"']+/gi;
    let last = 0;
    let m;
    while ((m = re.exec(text)) !== null) {
      let url = m[0];
      const trail = /[.,;:!?)\]]+$/.exec(url);   // keep trailing punctuation out
      if (trail) url = url.slice(0, -trail[0].length);
      if (m.index > last) parent.append(text.slice(last, m.index));
      let ok = false;
      try { ok = ['http:', 'https:'].includes(new URL(url).protocol); } catch (e) { ok = false; }
      if (ok) {
        const a = h('a', null, url);
        a.href = url;
        a.target = '_blank';
        a.rel = 'noopener noreferrer nofollow';
        parent.append(a);
      } else {
        parent.append(url);
      }
      last = m.index + url.length;
      re.lastIndex = last;
    }
    if (last < text.length) parent.append(text.slice(last));
  }

  // ---------------------------------------------------------------- views (rooms and private conversations)

  /** Get or create the view for a room ('#dev') or a private conversation ('@alice'). */
  function ensureView(key, label) {
    let view = state.views.get(key);
    if (view) return view;
    const isPrivate = key.startsWith('@');
    view = {
      key, isPrivate, label: label || key,
      members: [],
      seen: new Set(),            // "epoch:id" already rendered
      epoch: null, lastId: 0,     // resume position
      count: 0,                   // rendered chat messages
      unread: 0,
      mentions: 0,                // unread messages that mention us
      readId: null,               // our read position (owned nicks)
      typing: new Map(),          // nick -> timer: who is typing here
      stick: true,                // scrolled to the bottom
      lastDay: undefined,         // day of the last message, for day dividers
      joinDue: false,             // our `join` came: the next `history` is the join's (or resume's)
      asked: [],                  // our history requests not answered yet, in order: {ref, kind, before, limit}
      hole: null,                 // messages the server could not read yet (see noteHole)
    };
    // the scrolling log
    view.log = h('div', 'log');
    view.log.setAttribute('role', 'log');
    view.log.tabIndex = 0;
    view.log.hidden = true;
    view.list = h('ol', 'lines');
    view.log.append(view.list);
    view.log.addEventListener('scroll', () => {
      const l = view.log;
      view.stick = l.scrollHeight - l.scrollTop - l.clientHeight < 40;
    }, { passive: true });
    el.views.append(view.log);

    // the sidebar entry: [switch button][badge][leave/close button]
    view.item = h('li', 'nav-item');
    view.button = h('button', 'nav-button');
    view.button.type = 'button';
    view.button.addEventListener('click', () => { selectView(view.key); closeSidebar(); });
    view.badge = h('span', 'badge');
    view.badge.id = 'badge-' + Math.random().toString(36).slice(2, 10);
    view.badge.hidden = true;
    view.mentionBadge = h('span', 'badge mention-badge');
    view.mentionBadge.id = view.badge.id + '-m';
    view.mentionBadge.hidden = true;
    view.button.setAttribute('aria-describedby', view.badge.id + ' ' + view.mentionBadge.id);
    view.close = h('button', 'nav-close', '×');
    view.close.type = 'button';
    view.close.addEventListener('click', () => leaveView(view.key));
    view.item.append(view.button, view.mentionBadge, view.badge, view.close);
    setViewLabel(view, view.label);
    (isPrivate ? el.privateList : el.roomList).append(view.item);
    if (isPrivate) el.privatePanel.hidden = false;

    state.views.set(key, view);
    if (!state.current) selectView(key);
    refreshChrome();
    return view;
  }

  function setViewLabel(view, label) {
    view.label = label;
    view.button.textContent = view.isPrivate ? '@' + label : label;
    view.close.setAttribute('aria-label', (view.isPrivate ? 'Close @' : 'Leave ') + label);
    view.close.title = view.close.getAttribute('aria-label');
    view.log.setAttribute('aria-label', view.isPrivate ? 'Conversation with ' + label : label + ' log');
  }

  function removeView(key) {
    const view = state.views.get(key);
    if (!view) return;
    view.log.remove();
    view.item.remove();
    state.views.delete(key);
    for (const [ref, p] of state.pending) if (p.viewKey === key) state.pending.delete(ref);
    el.privatePanel.hidden = el.privateList.children.length === 0;
    if (state.current === key) {
      state.current = null;
      const next = [...state.views.keys()].find((k) => !k.startsWith('@')) || state.views.keys().next().value;
      if (next) selectView(next);
    }
    refreshChrome();
  }

  function selectView(key) {
    const view = state.views.get(key);
    if (!view) return;
    state.current = key;
    for (const v of state.views.values()) {
      v.log.hidden = v !== view;
      if (v === view) v.button.setAttribute('aria-current', 'true');
      else v.button.removeAttribute('aria-current');
    }
    setUnread(view, 0);
    if (view.stick) view.log.scrollTop = view.log.scrollHeight;
    if (state.typingRoom && state.typingRoom !== key) stopTyping();
    refreshChrome();
    renderTyping();
    markReadSoon();
  }

  const currentView = () => (state.current ? state.views.get(state.current) : null);

  function setMentions(view, n) {
    view.mentions = n;
    view.mentionBadge.hidden = n === 0;
    view.mentionBadge.textContent = '';
    if (n) view.mentionBadge.append('@' + (n > 99 ? '99+' : n), h('span', 'visually-hidden', n === 1 ? ' mention' : ' mentions'));
  }

  function setUnread(view, n) {
    if (n === 0) setMentions(view, 0);
    view.unread = n;
    view.badge.hidden = n === 0;
    view.badge.textContent = '';
    if (n) view.badge.append(String(n > 99 ? '99+' : n), h('span', 'visually-hidden', ' unread'));
    view.item.classList.toggle('has-unread', n > 0);
    let total = 0;
    for (const v of state.views.values()) total += v.unread;
    el.toggleBadge.hidden = total === 0;
    el.toggleBadge.textContent = total ? String(total) : '';
    document.title = (total ? '(' + total + ') ' : '') + 'twisted-chat';
  }

  /** Update header, member list and composer after anything changed. */
  function refreshChrome() {
    const view = currentView();
    el.noView.hidden = !!view || !state.everWelcomed;
    el.title.textContent = view ? (view.isPrivate ? '@' + view.label : view.label) : 'twisted-chat';
    if (!view) el.sub.textContent = '';
    else if (view.isPrivate) el.sub.textContent = 'private conversation';
    else el.sub.textContent = view.members.length + (view.members.length === 1 ? ' member' : ' members');
    renderMembers(view);
    el.message.placeholder = view ? (view.isPrivate ? 'Message @' + view.label : 'Message ' + view.label) : '';
    refreshComposer();
  }

  function renderMembers(view) {
    const list = el.memberList;
    list.textContent = '';
    const members = !view ? [] : view.isPrivate ? sortNicks([state.nick || '', view.label].filter(Boolean)) : view.members;
    el.memberCount.textContent = members.length ? '(' + members.length + ')' : '';
    for (const nick of members) {
      const li = h('li', 'member');
      const dot = h('span', 'dot ' + nickClass(nick));
      dot.setAttribute('aria-hidden', 'true');
      if (isMe(nick)) {
        li.append(dot, h('span', 'member-name', nick), h('span', 'muted', ' (you)'));
      } else {
        const b = h('button', 'member-name', nick);
        b.type = 'button';
        b.title = 'Private message to ' + nick;
        b.addEventListener('click', () => { openPrivate(nick); closeSidebar(); el.message.focus(); });
        li.append(dot, b);
      }
      list.append(li);
    }
  }

  function openPrivate(nick) {
    const key = '@' + nick.toLowerCase();
    ensureView(key, nick);
    selectView(key);
  }

  /** The user closes a view: part a room, or just close a private conversation. */
  function leaveView(key) {
    if (key.startsWith('@')) { removeView(key); return; }
    if (!request({ type: 'part', room: key }, 'part-form')) hintOffline();
  }

  // ---------------------------------------------------------------- rendering lines

  /** Insert a line into a view, keeping "stick to bottom" behaviour. */
  function addLine(view, li, before) {
    const log = view.log;
    const atBottom = log.hidden ? view.stick : log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    if (before) view.list.insertBefore(li, before); else view.list.append(li);
    if (atBottom) {
      view.stick = true;
      if (!log.hidden) log.scrollTop = log.scrollHeight;
    }
  }

  /** A discreet system line (join/part/nick, notices, local errors); returns it. */
  function addSys(view, text, cls, time) {
    if (!view) return;
    const li = h('li', 'sys' + (cls ? ' ' + cls : ''));
    if (cls !== 'gap' && cls !== 'day') li.append(timeElement(time || Date.now()), ' ');
    li.append(h('span', 'sys-text', text));
    addLine(view, li);
    return li;
  }

  /** Show a local (client-side) error in the current view, or near the login form. */
  function localError(text) {
    const view = currentView();
    if (view && state.everWelcomed) addSys(view, text, 'error');
    else el.nickError.textContent = text;
  }

  /** Build the element for a chat line (room message, action or private). */
  function messageElement(m, opts) {
    const from = String(m.from || '?');
    const text = String(m.text || '');
    const li = h('li', 'msg');
    if (m.action) li.classList.add('action');
    if (isMe(from)) li.classList.add('own');
    else if (mentionsMe(m, text)) li.classList.add('mention');
    if (opts.private) li.classList.add('private');
    const sender = h('span', 'from ' + nickClass(from), from);
    const body = h('div', 'text');
    if (m.action) {
      body.append(h('span', 'action-star', '* '), sender, ' ');
      appendRichText(body, text);
      li.append(timeElement(m.time), body);
    } else {
      const meta = h('div', 'meta');
      meta.append(sender, ' ', timeElement(m.time));
      if (opts.private && m.to && isMe(from)) meta.append(h('span', 'muted', ' → ' + m.to));
      if (m.edited) meta.append(h('span', 'edited muted', '(edited)'));
      appendRichText(body, text);
      li.append(meta, body);
    }
    li.dataset.from = from.toLowerCase();
    li.dataset.time = String(toDate(m.time).getTime());
    li.chat = { from, text, reactions: {}, deleted: false };
    if (m.deleted === true) markDeleted(li);
    return li;
  }

  /** Whether message `m` (with its `text`) mentions us: the server says so in `mentions`. */
  function mentionsMe(m, text) {
    if (!state.nick) return false;
    if (Array.isArray(m.mentions)) return m.mentions.some((n) => sameNick(n, state.nick));
    return new RegExp('(^|[^A-Za-z0-9_-])' + state.nick.replace(/[-]/g, '\\-') + '($|[^A-Za-z0-9_-])', 'i').test(text);
  }

  const quoteStart = (text) => { const t = String(text).replace(/\s+/g, ' '); return t.length > QUOTE_LENGTH ? t.slice(0, QUOTE_LENGTH) + '…' : t; };

  /** The confirmed message `id` of a view, if shown. */
  function findMessage(view, id) {
    return view ? view.list.querySelector('li.msg[data-id="' + Number(id) + '"]:not(.pending)') : null;
  }

  /** Above a reply: the message it answers, quoted; a button that shows it. */
  function quoteElement(view, replyTo) {
    const original = findMessage(view, replyTo);
    const q = h('button', 'quote');
    q.type = 'button';
    if (original && !original.chat.deleted) {
      q.append(h('span', 'from ' + nickClass(original.chat.from), original.chat.from), ' ', quoteStart(original.chat.text));
      q.setAttribute('aria-label', 'In reply to ' + original.chat.from + ': ' + quoteStart(original.chat.text) + '. Show that message');
    } else {
      q.append(original ? 'a deleted message' : 'an earlier message');
      q.setAttribute('aria-label', 'In reply to ' + (original ? 'a deleted message' : 'an earlier message') + '. Show it');
    }
    q.addEventListener('click', () => jumpTo(view.key, replyTo));
    return q;
  }

  function markDeleted(li) {
    li.chat.deleted = true;
    li.chat.text = '';
    li.classList.add('deleted');
    const body = li.querySelector('.text');
    if (body) { body.textContent = ''; body.append(h('em', 'muted', 'message deleted')); }
    for (const part of li.querySelectorAll('.reactions, .actions, .edited')) part.remove();
    if (state.compose && findMessage(state.views.get(state.compose.viewKey), state.compose.id) === li) endCompose();
  }

  // ---------------------------------------------------------------- replies, edits, deletions, reactions

  /** The request fields that name the message `li` of `view`. */
  function target(view, li) {
    return view.isPrivate ? { private: true, id: Number(li.dataset.id) } : { room: view.key, id: Number(li.dataset.id) };
  }

  /** Give a confirmed message its actions (reply, react; edit and delete for ours). */
  function addActions(view, li) {
    if (li.chat.deleted) return;
    const bar = h('div', 'actions');
    bar.setAttribute('role', 'toolbar');
    bar.setAttribute('aria-label', 'Message from ' + li.chat.from);
    const button = (label, text, fn) => {
      const b = h('button', 'action', text);
      b.type = 'button';
      b.setAttribute('aria-label', label);
      b.title = label;
      b.addEventListener('click', fn);
      bar.append(b);
      return b;
    };
    button('Reply to ' + li.chat.from, 'Reply', () => startCompose('reply', view, li));
    const react = button('Add a reaction', '☺+', () => togglePicker(view, li, react));
    react.setAttribute('aria-expanded', 'false');
    if (isMe(li.chat.from)) {
      button('Edit your message', 'Edit', () => startCompose('edit', view, li));
      const del = button('Delete your message', 'Delete', () => {
        if (!del.classList.contains('confirm')) {
          del.classList.add('confirm');
          del.textContent = 'Really delete?';
          del.setAttribute('aria-label', 'Really delete your message? Press again to delete');
          return;
        }
        if (!request({ type: 'delete', ...target(view, li) }, 'update-delete')) hintOffline();
      });
      del.addEventListener('blur', () => {
        del.classList.remove('confirm');
        del.textContent = 'Delete';
        del.setAttribute('aria-label', 'Delete your message');
      });
    }
    li.append(bar);
  }

  function togglePicker(view, li, opener) {
    const open = li.querySelector('.picker');
    if (open) { open.remove(); opener.setAttribute('aria-expanded', 'false'); opener.focus(); return; }
    const picker = h('div', 'picker');
    picker.setAttribute('role', 'group');
    picker.setAttribute('aria-label', 'Reactions');
    for (const [emoji, name] of REACTIONS) {
      const b = h('button', 'pick', emoji);
      b.type = 'button';
      b.setAttribute('aria-label', 'React with ' + name);
      b.title = name;
      b.addEventListener('click', () => {
        react(view, li, emoji);
        picker.remove();
        opener.setAttribute('aria-expanded', 'false');
        opener.focus();
      });
      picker.append(b);
    }
    picker.addEventListener('keydown', (e) => {
      if (e.key === 'Escape') { e.stopPropagation(); picker.remove(); opener.setAttribute('aria-expanded', 'false'); opener.focus(); }
    });
    li.append(picker);
    opener.setAttribute('aria-expanded', 'true');
    picker.firstChild.focus();
  }

  /** Add our `emoji` to message `li`, or take it back if it is there. */
  function react(view, li, emoji) {
    const on = !(li.chat.reactions[emoji] || []).some(isMe);
    if (!request({ type: 'react', ...target(view, li), emoji, on }, 'update-react')) hintOffline();
  }

  function renderReactions(view, li) {
    let box = li.querySelector('.reactions');
    const entries = Object.entries(li.chat.reactions).filter(([, nicks]) => nicks.length);
    if (!entries.length) { if (box) box.remove(); return; }
    if (!box) {
      box = h('div', 'reactions');
      const actions = li.querySelector('.actions');
      li.insertBefore(box, actions);
    }
    box.textContent = '';
    for (const [emoji, nicks] of entries) {
      const mine = nicks.some(isMe);
      const chip = h('button', 'reaction' + (mine ? ' mine' : ''));
      chip.type = 'button';
      chip.setAttribute('aria-pressed', String(mine));
      const who = nicks.join(', ');
      chip.setAttribute('aria-label', emoji + ' ' + nicks.length + ': ' + who + (mine ? '. Take yours back' : '. Add yours'));
      chip.title = who;
      chip.append(h('span', 'emoji', emoji), ' ', h('span', 'count', String(nicks.length)), h('span', 'who', who));
      chip.addEventListener('click', () => react(view, li, emoji));
      box.append(chip);
    }
  }

  function startCompose(mode, view, li) {
    state.compose = { mode, viewKey: view.key, id: Number(li.dataset.id), from: li.chat.from, text: li.chat.text };
    el.context.hidden = false;
    el.context.dataset.mode = mode;
    el.contextText.textContent = mode === 'edit'
      ? 'Editing your message'
      : 'Replying to ' + li.chat.from + ': ' + quoteStart(li.chat.text);
    if (mode === 'edit') el.message.value = li.chat.text;
    if (state.current !== view.key) selectView(view.key);
    el.message.focus();
  }

  function endCompose() {
    const wasEdit = state.compose && state.compose.mode === 'edit';
    state.compose = null;
    el.context.hidden = true;
    el.contextText.textContent = '';
    if (wasEdit) el.message.value = '';
  }

  /** Apply an edit, deletion or reaction event (live, or in a resumed history). */
  function applyUpdate(ev) {
    let view;
    if (ev.private === true) {
      const other = isMe(ev.from) ? ev.to : ev.from;
      view = typeof other === 'string' ? state.views.get('@' + other.toLowerCase()) : null;
      if (state.nick && Number.isInteger(ev.seq)) {
        const before = Number(storageGet(privateSeenKey(state.nick)) || 0);
        if (ev.seq > before) storageSet(privateSeenKey(state.nick), String(ev.seq));
      }
    } else {
      view = state.views.get(normalizeRoom(ev.room));
      // updates take ids of the room's sequence: our resume position moves on
      if (view && Number.isInteger(ev.seq) && String(ev.epoch) === view.epoch) view.lastId = Math.max(view.lastId, ev.seq);
    }
    const li = findMessage(view, ev.id);
    if (!li) return;
    if (ev.type === 'edit') {
      if (li.chat.deleted) return;
      li.chat.text = String(ev.text || '');
      const body = li.querySelector('.text');
      if (body) {
        if (li.classList.contains('action')) {
          const star = body.querySelector('.action-star'); const from = body.querySelector('.from');
          body.textContent = ''; body.append(star, from, ' ');
        } else body.textContent = '';
        appendRichText(body, li.chat.text);
      }
      const meta = li.querySelector('.meta');
      if (meta && !meta.querySelector('.edited')) meta.append(h('span', 'edited muted', '(edited)'));
      if (!isMe(li.chat.from)) li.classList.toggle('mention', mentionsMe(ev, li.chat.text));
    } else if (ev.type === 'delete') {
      markDeleted(li);
    } else if (ev.type === 'react' && typeof ev.emoji === 'string' && typeof ev.nick === 'string') {
      if (li.chat.deleted) return;
      const nicks = (li.chat.reactions[ev.emoji] || []).filter((n) => !sameNick(n, ev.nick));
      if (ev.on !== false) nicks.push(ev.nick);
      li.chat.reactions[ev.emoji] = nicks;
      renderReactions(view, li);
    }
  }

  function setReactions(view, li, reactions) {
    if (!reactions || typeof reactions !== 'object') return;
    for (const [emoji, nicks] of Object.entries(reactions)) {
      if (Array.isArray(nicks)) li.chat.reactions[emoji] = nicks.map(String);
    }
    renderReactions(view, li);
  }

  // ---------------------------------------------------------------- typing

  function renderTyping() {
    const view = currentView();
    const nicks = view ? [...view.typing.keys()] : [];
    el.typing.textContent = !nicks.length ? ''
      : nicks.length === 1 ? nicks[0] + ' is typing…'
      : nicks.length <= 3 ? nicks.slice(0, -1).join(', ') + ' and ' + nicks[nicks.length - 1] + ' are typing…'
      : nicks.length + ' people are typing…';
  }

  function typingEnded(view, nick) {
    for (const [n, timer] of view.typing) {
      if (sameNick(n, nick)) { clearTimeout(timer); view.typing.delete(n); }
    }
    if (view.key === state.current) renderTyping();
  }

  /** What we type in a room's box: "typing active" now and then, "done" when the box is emptied. */
  function typed() {
    const view = currentView();
    const text = el.message.value;
    if (!view || view.isPrivate || state.compose && state.compose.mode === 'edit') return;
    if (!text || text.startsWith('/')) { stopTyping(); return; }
    const now = Date.now();
    if (state.typingRoom === view.key && now - state.typingSentAt < TYPING_EVERY) return;
    if (send({ type: 'typing', room: view.key, state: 'active' })) { state.typingRoom = view.key; state.typingSentAt = now; }
  }

  function stopTyping() {
    if (state.typingRoom) send({ type: 'typing', room: state.typingRoom, state: 'done' });
    state.typingRoom = null;
    state.typingSentAt = 0;
  }

  // ---------------------------------------------------------------- read positions

  let readTimer = 0;
  /** Soon (so a burst of messages makes one request): tell the server what we have read. */
  function markReadSoon() {
    clearTimeout(readTimer);
    readTimer = setTimeout(markRead, 300);
  }

  function markRead() {
    const view = currentView();
    if (!view || view.isPrivate || !state.owner || document.hidden) return;
    const all = view.list.querySelectorAll('li.msg[data-id]:not(.pending)');
    const last = all.length ? Number(all[all.length - 1].dataset.id) : 0;
    // (updates take ids too: the position is the highest id seen)
    const position = view.epoch !== null ? Math.max(last, view.lastId) : last;
    if (!position || (view.readId !== null && position <= view.readId)) return;
    if (send({ type: 'read', room: view.key, id: position })) view.readId = position;
  }

  /** Counts from our read position `id` (another tab or device moved it). */
  function readMoved(view, id) {
    view.readId = id;
    let unread = 0;
    let mentions = 0;
    for (const li of view.list.querySelectorAll('li.msg[data-id]:not(.pending):not(.own):not(.deleted)')) {
      if (Number(li.dataset.id) > id) { unread++; if (li.classList.contains('mention')) mentions++; }
    }
    if (view.key === state.current && !document.hidden) unread = mentions = 0;
    setUnread(view, unread);
    setMentions(view, mentions);
  }

  /** The "new messages" line before the first message after our read position. */
  function newDivider(view, id) {
    for (const old of view.list.querySelectorAll('.sys.new-divider')) old.remove();
    for (const li of view.list.querySelectorAll('li.msg[data-id]:not(.pending)')) {
      if (Number(li.dataset.id) > id && !li.classList.contains('own')) {
        const divider = h('li', 'sys new-divider');
        divider.append(h('span', 'sys-text', 'New messages'));
        view.list.insertBefore(divider, li);
        return;
      }
    }
  }

  // ---------------------------------------------------------------- search

  function showResults(ev) {
    const results = Array.isArray(ev.results) ? ev.results : [];
    el.searchSummary.textContent = results.length === 1 ? '1 message found' : results.length + ' messages found';
    el.searchResults.textContent = '';
    for (const r of results) {
      const isPrivate = r.type === 'private';
      const other = isPrivate ? (isMe(r.from) ? r.to : r.from) : null;
      const key = isPrivate ? '@' + String(other).toLowerCase() : normalizeRoom(r.room);
      if (!key) continue;
      const li = h('li');
      const b = h('button', 'search-hit');
      b.type = 'button';
      const where = isPrivate ? '@' + other : key;
      const meta = h('span', 'hit-meta');
      meta.append(h('span', 'hit-where', where), ' ', h('span', 'from ' + nickClass(r.from), String(r.from)), ' ', timeElement(r.time));
      b.append(meta, h('span', 'hit-text', quoteStart(r.text || '')));
      b.setAttribute('aria-label', String(r.from) + ' in ' + where + ': ' + quoteStart(r.text || '') + '. Show in context');
      b.addEventListener('click', () => {
        if (isPrivate) ensureView(key, other);
        closeSidebar();
        jumpTo(key, r.id);
      });
      li.append(b);
      el.searchResults.append(li);
    }
  }

  /** Show message `id` of view `key` in context: scrolled to, highlighted and focused. */
  function jumpTo(key, id) {
    const view = state.views.get(key);
    if (!view) { localError('You are not in ' + key + ' any more'); return; }
    selectView(key);
    const li = findMessage(view, id);
    if (li) { highlight(view, li); return; }
    if (view.isPrivate) { localError('That message is not loaded here'); return; }
    // older than what the view shows: fetch the messages around it
    state.jumpTo = { key, id: Number(id) };
    if (!askHistory(view, 'jump', Number(id) + 25, 50)) { state.jumpTo = null; hintOffline(); }
  }

  /** The answer to our history request for a jump: show the message asked for. */
  function jumpAnswered(view, ev, msgs, epoch) {
    for (const m of msgs) renderRoomMessage({ room: view.key, epoch, ...m }, { unread: false });
    const jump = state.jumpTo;
    if (!jump || jump.key !== view.key) return;
    state.jumpTo = null;
    const li = findMessage(view, jump.id);
    if (li) highlight(view, li);
    else localError(ev.reason === 'unavailable' ? 'The history could not be read now: try again later' : 'That message is no longer in the history');
  }

  function highlight(view, li) {
    for (const old of document.querySelectorAll('li.msg.flash')) old.classList.remove('flash');
    li.classList.add('flash');
    li.tabIndex = -1;
    view.stick = false;
    li.scrollIntoView({ block: 'center' });
    li.focus({ preventScroll: true });
    setTimeout(() => li.classList.remove('flash'), 4000);
  }

  // ---------------------------------------------------------------- history requests, and holes to fill

  /**
   * Ask for the `limit` messages of room `view` before id `before`. Its
   * answer is a `history` like the join's: it is told apart from the join's
   * (which comes after our `join`) and from our other requests by the order
   * of `view.asked` (the server answers a connection's requests in order).
   * `kind` is 'jump' or 'fill'. False when offline.
   */
  function askHistory(view, kind, before, limit) {
    const ref = nextRef();
    if (!send({ type: 'history', room: view.key, before, limit, ref })) return false;
    view.asked.push({ ref, kind, before, limit });
    return true;
  }

  /** An error for one of our history requests (by its ref): it will get no `history`. */
  function historyRefused(ref, text) {
    for (const view of state.views.values()) {
      const i = view.asked.findIndex((a) => a.ref === ref);
      if (i < 0) continue;
      const [a] = view.asked.splice(i, 1);
      if (a.kind === 'fill' && view.hole) view.hole.asking = false;   // asked again later
      if (a.kind === 'jump' && state.jumpTo && state.jumpTo.key === view.key) { state.jumpTo = null; localError(text); }
      return true;
    }
    return false;
  }

  const HOLE_WAITING = 'The history could not be read now; it will be fetched when the server can read it';
  const HOLE_LOST = 'The history could not be read, and it cannot be fetched any more';

  /**
   * The join's (or resume's) history of `view` came empty because the
   * server could not read its store (`reason: "unavailable"`); the live
   * messages follow. Remember the hole: from the last id the view showed
   * in its epoch (0 when it showed nothing) to the first live message,
   * which tells where the hole ends (fillHole). A second such history
   * before the first is filled makes one hole of both (fetched together;
   * what is shown already is not shown twice).
   */
  function noteHole(view, epoch) {
    if (view.hole) { view.hole.before = null; return; }
    const known = view.epoch !== null;
    view.hole = {
      epoch: known ? view.epoch : null,   // null: the first live message's
      last: known ? view.lastId : 0,
      before: null,                       // the first live message's id
      asking: false,
      askedAt: 0,
      line: addSys(view, HOLE_WAITING, 'gap'),
    };
  }

  /**
   * A live message `m` of `view`, which has a hole: the first one tells
   * where the hole ends; ask for what is in it (askHole).
   */
  function fillHole(view, m) {
    const hole = view.hole;
    const epoch = String(m.epoch == null ? '' : m.epoch);
    if (hole.epoch === null) hole.epoch = epoch;
    if (epoch !== hole.epoch) { endHole(view, 'Some messages may be missing here'); return; }
    if (hole.before === null) hole.before = m.id;
    askHole(view);
  }

  /**
   * Ask for the messages between the start of `view`'s hole and the first
   * live message after it, unless that request is under way or was made
   * less than FILL_EVERY ms ago (its answer was `unavailable` again).
   */
  function askHole(view) {
    const hole = view.hole;
    if (hole.before === null || hole.asking || Date.now() - hole.askedAt < FILL_EVERY) return;
    const missed = hole.before - 1 - hole.last;
    if (missed <= 0) { endHole(view, null); return; }   // nothing was said meanwhile
    // (after nothing shown, as much as a join shows)
    const limit = Math.min(missed, hole.last ? FILL_MAX : JOIN_HISTORY);
    if (askHistory(view, 'fill', hole.before, limit)) { hole.asking = true; hole.askedAt = Date.now(); }
  }

  /** The answer to our request `a` for the messages of `view`'s hole. */
  function holeAnswered(view, a, ev, msgs, epoch) {
    const hole = view.hole;
    if (!hole) return;                    // (the store lost them since: an `epoch` came)
    hole.asking = false;
    if (ev.reason === 'unavailable') return;   // still unreadable: asked again on a later live message
    if (epoch !== null && epoch !== hole.epoch) { endHole(view, HOLE_LOST); return; }   // (the store lost it)
    const inHole = msgs.filter((m) => String(m.epoch == null ? epoch : m.epoch) === hole.epoch
      && m.id > hole.last && m.id < a.before);
    const fetched = inHole.filter((m) => !view.seen.has(hole.epoch + ':' + m.id)).length;
    for (const m of inHole) renderRoomMessage({ room: view.key, ...m, epoch: hole.epoch }, { unread: hole.last > 0 });
    if (a.before !== hole.before) return;   // the hole grew meanwhile: the rest on the next live message
    // a full page that does not reach back to the hole's start: the older part is not fetched
    const cut = msgs.length >= a.limit && Math.min(...msgs.map((m) => m.id)) > hole.last + 1;
    if (hole.last && cut) {
      endHole(view, 'Some messages may be missing here: the history could not be read at first, and only the latest ' + a.limit + ' were fetched');
    } else if (fetched) {
      endHole(view, 'The history could not be read at first: the messages below were fetched later');
    } else {
      endHole(view, null);                // nothing was missed
    }
  }

  /** The hole of `view` is filled or can no longer be: say so on its line (`text`), or drop the line (null). */
  function endHole(view, text) {
    const hole = view.hole;
    view.hole = null;
    if (!hole) return;
    if (text === null) { hole.line.remove(); return; }
    hole.line.querySelector('.sys-text').textContent = text;
  }

  /** Before the first message of another day, a "Monday, 24 November" line. */
  function dayDivider(view, time) {
    const d = toDate(time);
    const day = d.toDateString();
    const first = view.lastDay === undefined;
    if (day === view.lastDay) return;
    view.lastDay = day;
    if (first && day === new Date().toDateString()) return;   // today needs no label
    const today = new Date();
    const yesterday = new Date(today.getFullYear(), today.getMonth(), today.getDate() - 1);
    const label = day === today.toDateString() ? 'Today'
      : day === yesterday.toDateString() ? 'Yesterday'
      : d.toLocaleDateString(undefined, { weekday: 'long', day: 'numeric', month: 'long',
        year: d.getFullYear() === today.getFullYear() ? undefined : 'numeric' });
    addSys(view, label, 'day');
  }

  /** Group with the previous line when it is the same sender within a few minutes. */
  function maybeGroup(view, li, prev) {
    if (li.classList.contains('action') || !prev || !prev.classList.contains('msg')) return;
    if (prev.classList.contains('action') || prev.classList.contains('pending')) return;
    if (prev.dataset.from !== li.dataset.from) return;
    if (Number(li.dataset.time) - Number(prev.dataset.time) > GROUP_WINDOW) return;
    li.classList.add('cont');
  }

  /**
   * Render a room message once. `opts.unread`: count it as unread when the
   * view is not on screen.
   */
  function renderRoomMessage(m, opts) {
    const key = normalizeRoom(m.room);
    const view = key && state.views.get(key);
    if (!view || typeof m.id !== 'number') return;
    const epoch = String(m.epoch == null ? '' : m.epoch);
    const seenKey = epoch + ':' + m.id;
    if (view.seen.has(seenKey)) {                 // never twice
      resolvePending(view, m, epoch, true);
      return;
    }
    resolvePending(view, m, epoch, false);
    view.seen.add(seenKey);

    const li = messageElement(m, {});
    li.dataset.id = String(m.id);
    li.dataset.room = key;
    li.dataset.epoch = epoch;
    if (Number.isInteger(m.reply_to)) li.insertBefore(quoteElement(view, m.reply_to), li.firstChild);
    addActions(view, li);
    setReactions(view, li, m.reactions);
    typingEnded(view, String(m.from || ''));

    // Normally messages arrive in id order and are appended. An older message
    // of the same epoch (filling a hole) is inserted before the first newer one.
    let before = null;
    if (epoch === view.epoch && m.id < view.lastId) {
      for (const other of view.list.querySelectorAll('li.msg[data-id]')) {
        if (other.dataset.epoch === epoch && Number(other.dataset.id) > m.id) { before = other; break; }
      }
    }
    if (!before) {
      dayDivider(view, m.time);
      maybeGroup(view, li, view.list.lastElementChild);
    }
    addLine(view, li, before);
    view.count++;

    // resume position: the epoch and the highest id seen in it
    if (view.epoch !== epoch) { view.epoch = epoch; view.lastId = m.id; }
    else view.lastId = Math.max(view.lastId, m.id);

    if (opts.unread && !isMe(m.from) && !m.deleted && (state.current !== key || document.hidden)) {
      setUnread(view, view.unread + 1);
      if (li.classList.contains('mention')) setMentions(view, view.mentions + 1);
    }
    if (state.current === key) markReadSoon();
  }

  function renderPrivate(m, opts) {
    const other = isMe(m.from) ? m.to : m.from;
    if (typeof other !== 'string' || !other) return;
    const key = '@' + other.toLowerCase();
    const view = ensureView(key, other);
    if (view.label !== other) setViewLabel(view, other);
    const seenKey = m.id + ':' + m.time;
    const seen = state.seenPrivate.has(seenKey);
    resolvePending(view, m, null, seen);
    if (seen) return;
    state.seenPrivate.add(seenKey);
    state.ackedPrivate.add(m.id);
    if (state.nick && Number.isInteger(m.id)) {
      const before = Number(storageGet(privateSeenKey(state.nick)) || 0);
      if (m.id > before) storageSet(privateSeenKey(state.nick), String(m.id));
    }
    const li = messageElement(m, { private: true });
    li.dataset.id = String(m.id);
    li.dataset.room = key;
    if (Number.isInteger(m.reply_to)) li.insertBefore(quoteElement(view, m.reply_to), li.firstChild);
    addActions(view, li);
    setReactions(view, li, m.reactions);
    dayDivider(view, m.time);
    maybeGroup(view, li, view.list.lastElementChild);
    addLine(view, li);
    view.count++;
    if (opts.unread && !isMe(m.from) && (state.current !== key || document.hidden)) setUnread(view, view.unread + 1);
  }

  // ---------------------------------------------------------------- our own messages in flight

  /** Show our message as pending until the server echoes it. */
  function addPending(view, req) {
    const li = messageElement({ from: state.nick || 'you', text: req.text, action: req.action, time: Date.now() }, {});
    li.classList.add('pending');
    li.dataset.ref = req.ref;
    const note = h('span', 'pending-note', 'sending…');
    li.append(note);
    addLine(view, li);
    view.log.scrollTop = view.log.scrollHeight;   // always show what we just sent
    view.stick = true;
    state.pending.set(req.ref, { ref: req.ref, req, viewKey: view.key, li, note, state: 'sent', id: null, epoch: null });
  }

  /**
   * Drop the pending line matching a message of ours that just arrived: the
   * one acked with this id, else the oldest unacked one with the same text.
   * A message seen before (`idOnly`) can only match by id.
   */
  function resolvePending(view, m, epoch, idOnly) {
    if (!isMe(m.from)) return;
    let match = null;
    for (const p of state.pending.values()) {
      if (p.viewKey !== view.key) continue;
      if (p.id !== null && p.id === m.id && (epoch === null || p.epoch === epoch)) { match = p; break; }
      if (!idOnly && !match && p.id === null && p.req.text === m.text && !!p.req.action === !!m.action) match = p;
    }
    if (match) { match.li.remove(); state.pending.delete(match.ref); }
  }

  function markFailed(p, reason) {
    p.state = 'failed';
    p.li.classList.add('failed');
    p.note.textContent = 'not sent: ' + reason + ' ';
    if (!p.li.querySelector('.retry')) {
      const retry = h('button', 'link-button retry', 'Retry');
      retry.type = 'button';
      retry.addEventListener('click', () => {
        if (!send(p.req)) { hintOffline(); return; }
        p.state = 'sent';
        p.li.classList.remove('failed');
        p.note.textContent = 'sending…';
      });
      const discard = h('button', 'link-button', 'Discard');
      discard.type = 'button';
      discard.addEventListener('click', () => { p.li.remove(); state.pending.delete(p.ref); });
      p.note.append(retry, ' ', discard);
    }
  }

  function onAck(ev) {
    const p = state.pending.get(ev.ref);
    if (!p) return;
    p.id = ev.id;
    p.epoch = ev.epoch == null ? null : String(ev.epoch);
    const view = state.views.get(p.viewKey);
    const done = p.req.type === 'msg'
      ? state.ackedPrivate.has(ev.id)
      : view && view.seen.has(p.epoch + ':' + ev.id);
    if (done || !view) { p.li.remove(); state.pending.delete(p.ref); }
  }

  // ---------------------------------------------------------------- server events

  const handlers = {
    welcome(ev) {
      state.welcomed = true;
      state.everWelcomed = true;
      state.attempt = 0;
      state.nickRetries = 0;
      clearTimeout(state.handshakeTimer);
      state.nick = ev.nick;
      state.owner = ev.owner === true || ev.authenticated === true;
      state.typingRoom = null;
      for (const v of state.views.values()) for (const nick of [...v.typing.keys()]) typingEnded(v, nick);
      if (state.nickChosen) storageSet(STORE_NICK, ev.nick);
      if (typeof ev.token === 'string') storageSet(tokenKey(ev.nick), ev.token);
      el.nick.value = ev.nick;
      el.nickError.textContent = '';
      setStatus('online');
      enterChat();
      // rooms we asked for but are not in any more are dropped
      const rooms = new Set((Array.isArray(ev.rooms) ? ev.rooms : []).map(normalizeRoom).filter(Boolean));
      if (Array.isArray(ev.rooms)) {
        for (const key of [...state.views.keys()]) if (!key.startsWith('@') && !rooms.has(key)) removeView(key);
      }
      for (const key of rooms) ensureView(key);
      // answers to the requests of the connection before will not come
      state.jumpTo = null;
      for (const v of state.views.values()) {
        v.asked = [];
        v.joinDue = false;
        if (v.hole) { v.hole.asking = false; v.hole.askedAt = 0; }
      }
      // private messages that were in flight cannot be checked against a history
      for (const p of state.pending.values()) {
        if (p.state === 'unconfirmed' && p.req.type === 'msg') markFailed(p, 'connection lost (it may have been delivered)');
      }
      refreshChrome();
    },

    message(ev) {
      renderRoomMessage(ev, { unread: true });
      const view = state.views.get(normalizeRoom(ev.room));
      if (view && view.hole && typeof ev.id === 'number') fillHole(view, ev);
    },

    private(ev) { renderPrivate(ev, { unread: true }); },

    'private-history'(ev) {   // private messages we missed (sent after a hello with our token)
      for (const m of ev.messages || []) renderPrivate(m, { unread: false });
      for (const u of Array.isArray(ev.updates) ? ev.updates : []) applyUpdate(u);
    },

    edit: applyUpdate,
    delete: applyUpdate,
    react: applyUpdate,

    typing(ev) {
      const view = state.views.get(normalizeRoom(ev.room));
      if (!view || typeof ev.nick !== 'string' || isMe(ev.nick)) return;
      typingEnded(view, ev.nick);
      if (ev.state === 'active') {
        view.typing.set(ev.nick, setTimeout(() => typingEnded(view, ev.nick), TYPING_EXPIRES));
        if (view.key === state.current) renderTyping();
      }
    },

    read(ev) {   // our read position, from this or another connection of our nick
      const view = state.views.get(normalizeRoom(ev.room));
      if (view && Number.isInteger(ev.id)) readMoved(view, ev.id);
    },

    search: showResults,

    join(ev) {
      const key = normalizeRoom(ev.room);
      if (!key) return;
      if (isMe(ev.nick)) {
        const existed = state.views.has(key);
        const view = ensureView(key);
        view.joinDue = true;   // its history comes next
        if (!existed) addSys(view, 'You joined ' + key, 'join', ev.time);
        if (state.switchTo === key) { state.switchTo = null; selectView(key); }
        return;
      }
      const view = state.views.get(key);
      if (!view) return;
      if (!view.members.some((n) => sameNick(n, ev.nick))) view.members = sortNicks([...view.members, ev.nick]);
      addSys(view, ev.nick + ' joined', 'join', ev.time);
      if (state.current === key) refreshChrome();
    },

    part(ev) {
      const key = normalizeRoom(ev.room);
      if (!key) return;
      if (isMe(ev.nick)) { removeView(key); return; }
      const view = state.views.get(key);
      if (!view) return;
      view.members = view.members.filter((n) => !sameNick(n, ev.nick));
      const why = ev.reason && ev.reason !== 'left' ? ' (' + ev.reason + ')' : '';
      addSys(view, ev.nick + ' left' + why, 'part', ev.time);
      if (state.current === key) refreshChrome();
    },

    nick(ev) {
      const { old, new: nu } = ev;
      if (typeof old !== 'string' || typeof nu !== 'string') return;
      const me = isMe(old);
      if (me) {
        state.nick = nu;
        state.wantedNick = nu;
        state.nickChosen = true;
        storageSet(STORE_NICK, nu);
        el.nick.value = nu;
        el.nickError.textContent = '';
      }
      const only = Array.isArray(ev.rooms) ? new Set(ev.rooms.map(normalizeRoom)) : null;
      const text = me ? 'You are now known as ' + nu : old + ' is now known as ' + nu;
      for (const view of state.views.values()) {
        if (view.isPrivate) continue;
        const had = view.members.some((n) => sameNick(n, old));
        if (had) view.members = sortNicks(view.members.map((n) => (sameNick(n, old) ? nu : n)));
        if (only ? only.has(view.key) : had) addSys(view, text, 'nick', ev.time);
      }
      // a private conversation follows the person
      const pv = state.views.get('@' + old.toLowerCase());
      if (pv && !state.views.has('@' + nu.toLowerCase())) {
        state.views.delete(pv.key);
        pv.key = '@' + nu.toLowerCase();
        state.views.set(pv.key, pv);
        if (state.current === '@' + old.toLowerCase()) state.current = pv.key;
        setViewLabel(pv, nu);
        addSys(pv, text, 'nick', ev.time);
      }
      refreshChrome();
    },

    presence(ev) {
      const view = state.views.get(normalizeRoom(ev.room));
      if (!view || !Array.isArray(ev.members)) return;
      view.members = sortNicks(ev.members);
      if (state.current === view.key) refreshChrome();
    },

    history(ev) {
      const key = normalizeRoom(ev.room);
      const view = key && state.views.get(key);
      if (!view) return;
      const msgs = Array.isArray(ev.messages) ? ev.messages : [];
      const epoch = ev.epoch == null ? null : String(ev.epoch);
      // The join's (or resume's) history comes after our `join`; any other
      // answers our oldest history request of the room not answered yet.
      const asked = view.joinDue ? null : view.asked.shift();
      view.joinDue = false;
      if (asked) {
        if (asked.kind === 'fill') holeAnswered(view, asked, ev, msgs, epoch);
        else jumpAnswered(view, ev, msgs, epoch);
        if (state.current === key) markReadSoon();
        return;
      }
      // The store could not be read: what we missed is fetched later (and
      // now, if it can be read again and the hole's end is known).
      const unavailable = ev.reason === 'unavailable';
      if (unavailable) noteHole(view, epoch);
      else if (view.hole && epoch !== null && view.hole.epoch !== null && epoch !== view.hole.epoch) {
        endHole(view, HOLE_LOST);
      } else if (view.hole) askHole(view);
      // Is there a hole between what we showed and what comes now?
      if (view.count > 0 && ev.recovered !== true && !unavailable) {
        let gap = ev.recovered === false;
        if (!gap && msgs.length) {
          const first = msgs[0];
          gap = String(first.epoch ?? epoch) !== view.epoch || first.id > view.lastId + 1;
        }
        if (gap) addSys(view, 'Some messages may be missing here', 'gap');
      }
      for (const m of msgs) renderRoomMessage({ room: key, epoch, ...m }, { unread: ev.recovered === true });
      if (epoch !== null && view.epoch !== epoch && !msgs.length && !unavailable) { view.epoch = epoch; view.lastId = 0; }
      for (const u of Array.isArray(ev.updates) ? ev.updates : []) applyUpdate({ room: key, epoch, ...u });
      if (ev.read && Number.isInteger(ev.read.id)) {
        newDivider(view, ev.read.id);
        view.readId = ev.read.id;
        if (state.current !== key || document.hidden) {
          setUnread(view, Number(ev.read.unread) || 0);
          setMentions(view, Number(ev.read.mentions) || 0);
        }
      }
      if (state.current === key) markReadSoon();
      // what we sent before the connection dropped and is not in the history was lost
      for (const p of state.pending.values()) {
        if (p.viewKey === key && p.state === 'unconfirmed') {
          markFailed(p, ev.recovered === true ? 'connection lost' : 'connection lost (it may have been delivered)');
        }
      }
    },

    epoch(ev) {
      // The server's store lost its messages: ids start again at 1 in a new
      // epoch, and what this view showed can no longer be resumed from.
      const view = state.views.get(normalizeRoom(ev.room));
      if (!view) return;
      endHole(view, HOLE_LOST);
      view.epoch = ev.epoch == null ? null : String(ev.epoch);
      view.lastId = 0;
      addSys(view, 'The server lost the message history: earlier messages are gone', 'gap', ev.time);
    },

    rooms(ev) {
      const list = (ev.rooms || []).map((r) => r.room + ' (' + r.members + ')').join(', ');
      addSys(currentView(), 'Rooms: ' + (list || 'none'), 'info');
    },

    ack: onAck,

    notice(ev) {
      // a server going down says when to come back (jittered per client),
      // so a restart does not bring every page back at the same instant
      if (Number.isFinite(ev.reconnect_after) && ev.reconnect_after > 0) state.serverDelay = ev.reconnect_after;
      const views = [...state.views.values()].filter((v) => !v.isPrivate);
      for (const v of views.length ? views : [currentView()].filter(Boolean)) addSys(v, String(ev.text), 'notice');
    },

    error(ev) {
      const code = ev.code;
      const text = String(ev.message || code || 'error');
      const p = ev.ref && state.pending.get(ev.ref);
      if (p) { markFailed(p, text); return; }
      if (ev.ref && historyRefused(ev.ref, text)) return;
      const nickError = code === 'nick-taken' || code === 'bad-nick';
      if (!state.welcomed && nickError) { helloNickRefused(code, text); return; }

      // Which request failed: by its ref if the server echoed it, else by the code.
      let kind = (ev.ref && state.requests.get(ev.ref)) || null;
      if (ev.ref) state.requests.delete(ev.ref);
      if (!kind && nickError) kind = 'nick-' + state.lastNickSource;
      if (!kind && (code === 'bad-room' || code === 'too-many-rooms')) kind = 'join-' + state.lastJoinSource;
      if (kind && kind.startsWith('join')) state.switchTo = null;

      if (kind === 'nick-form') {
        // asked for in the nickname form: answer there
        el.nickError.textContent = text;
        openSidebar();
        el.nick.focus();
        el.nick.select();
      } else if (kind === 'join-form') {
        el.roomError.textContent = text;
        openSidebar();
        el.roomInput.focus();
      } else {
        localError(text);
      }
    },
  };

  function dispatch(ev) {
    if (!ev || typeof ev !== 'object' || typeof ev.type !== 'string') return;
    const fn = Object.prototype.hasOwnProperty.call(handlers, ev.type) ? handlers[ev.type] : null;
    if (fn) fn(ev);
  }

  // ---------------------------------------------------------------- connection

  function wsUrl() {
    // relative to the page: served at /  ->  /ws ; at /chat/ -> /chat/ws
    const dir = location.pathname.replace(/[^/]*$/, '');
    return (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + dir + 'ws';
  }

  function setStatus(status, text) {
    state.status = status;
    el.body.dataset.state = status === 'reconnecting' ? 'offline' : status;
    el.status.textContent = text || { connecting: 'connecting…', online: 'online', offline: 'offline' }[status] || status;
    el.status.className = 'status status-' + status;
    el.retryNow.hidden = status !== 'reconnecting';
    el.nickButton.textContent = status === 'online' ? 'Change' : 'Connect';
    refreshComposer();
  }

  function connect() {
    clearTimeout(state.timer);
    clearInterval(state.tick);
    clearTimeout(state.handshakeTimer);
    if (state.ws) {
      const old = state.ws;
      state.ws = null;
      try { old.close(); } catch (e) { /* ignore */ }
      inFlightLost();
    }
    state.stopped = false;
    state.welcomed = false;
    setStatus('connecting');
    let ws;
    try {
      ws = new WebSocket(wsUrl(), 'chat.json');
    } catch (e) {
      scheduleReconnect();
      return;
    }
    state.ws = ws;
    // a connection that neither opens nor says welcome in time is retried
    state.handshakeTimer = setTimeout(() => { if (state.ws === ws && !state.welcomed) ws.close(); }, HANDSHAKE_TIMEOUT);
    ws.addEventListener('open', () => {
      if (state.ws === ws) ws.send(JSON.stringify(helloRequest()));
    });
    ws.addEventListener('message', (e) => {
      if (state.ws !== ws || typeof e.data !== 'string') return;
      let ev;
      try { ev = JSON.parse(e.data); } catch (err) { return; }
      dispatch(ev);
    });
    ws.addEventListener('close', () => {
      if (state.ws !== ws) return;
      state.ws = null;
      state.welcomed = false;
      clearTimeout(state.handshakeTimer);
      inFlightLost();
      if (state.stopped) setStatus('offline');
      else scheduleReconnect();
    });
  }

  /** The connection is gone: what was in flight is unconfirmed; the resumed history will tell. */
  function inFlightLost() {
    for (const p of state.pending.values()) {
      if (p.state === 'sent') { p.state = 'unconfirmed'; p.note.textContent = 'waiting for the connection…'; }
    }
  }

  function helloRequest() {
    const hello = { type: 'hello' };
    if (state.wantedNick) {
      hello.nick = state.wantedNick;
      const token = storageGet(tokenKey(state.wantedNick));
      if (token) hello.token = token;
      const seen = Number(storageGet(privateSeenKey(state.wantedNick)) || 0);
      if (seen > 0) hello.private_since = seen;
    }
    const rooms = [...state.views.values()].filter((v) => !v.isPrivate);
    if (state.everWelcomed) {
      hello.rooms = rooms.map((v) => v.key);
      const since = {};
      for (const v of rooms) if (v.epoch !== null) since[v.key] = { epoch: v.epoch, id: v.lastId };
      if (Object.keys(since).length) hello.since = since;
    }
    return hello;
  }

  function scheduleReconnect(note) {
    state.attempt++;
    const cap = Math.min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (state.attempt - 1));
    let delay = Math.max(BACKOFF_MIN, Math.random() * cap);   // full jitter
    if (state.serverDelay) { delay = Math.max(delay, state.serverDelay); state.serverDelay = 0; }
    state.retryAt = Date.now() + delay;
    state.retryNote = note || '';
    const show = () => {
      const s = Math.max(1, Math.ceil((state.retryAt - Date.now()) / 1000));
      setStatus('reconnecting', 'reconnecting in ' + s + ' s…' + (state.retryNote ? ' (' + state.retryNote + ')' : ''));
    };
    show();
    clearInterval(state.tick);
    state.tick = setInterval(show, 1000);
    clearTimeout(state.timer);
    state.timer = setTimeout(connect, delay);
  }

  /** Stop reconnecting and wait for the user (e.g. to choose another nick). */
  function stop() {
    state.stopped = true;
    clearTimeout(state.timer);
    clearInterval(state.tick);
    clearTimeout(state.handshakeTimer);
    const ws = state.ws;
    state.ws = null;
    state.welcomed = false;
    if (ws) { try { ws.close(); } catch (e) { /* ignore */ } }
    inFlightLost();
    setStatus('offline');
  }

  /** The server refused the nick in our hello. */
  function helloNickRefused(code, text) {
    if (state.everWelcomed && !state.nickChosen) {
      // a guest nick we were given earlier: just take a new guest nick
      state.wantedNick = '';
      state.ws.close();
      return;
    }
    if (state.everWelcomed && code === 'nick-taken' && state.nickRetries < NICK_TAKEN_RETRIES) {
      // probably our own previous connection, not yet noticed as gone by the server
      state.nickRetries++;
      const ws = state.ws;
      state.ws = null;
      ws.close();
      scheduleReconnect(state.wantedNick + ' still in use');
      return;
    }
    stop();
    el.nickError.textContent = text + ' — choose another nickname.';
    if (state.everWelcomed) openSidebar();
    el.nick.focus();
    el.nick.select();
  }

  /** Send a request on the live connection; false when offline. */
  function send(obj) {
    const ws = state.ws;
    if (!ws || !state.welcomed || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(obj));
    return true;
  }

  /**
   * Send a join/part/nick request with a ref, to route a possible error back.
   * `kind` is e.g. 'nick-form' or 'join-command': which request, typed where.
   */
  function request(obj, kind) {
    obj.ref = nextRef();
    if (!send(obj)) return false;
    if (kind.startsWith('nick-')) state.lastNickSource = kind.slice(5);
    if (kind.startsWith('join-')) state.lastJoinSource = kind.slice(5);
    state.requests.set(obj.ref, kind);
    if (state.requests.size > 200) state.requests.delete(state.requests.keys().next().value);
    return true;
  }

  // ---------------------------------------------------------------- phases and chrome

  function enterChat() {
    if (el.body.dataset.phase === 'chat') return;
    el.body.dataset.phase = 'chat';
    el.meSlot.append(el.nickForm);
    el.message.focus();
  }

  const online = () => state.status === 'online';

  function refreshComposer() {
    const view = currentView();
    const ok = online() && !!view;
    el.send.disabled = !ok;
    if (!online() && state.everWelcomed) {
      el.hint.textContent = 'You are offline: messages cannot be sent until the connection is back. Your text stays in the box.';
    } else if (!view && state.everWelcomed) {
      el.hint.textContent = 'Join a room to start talking.';
    } else {
      el.hint.textContent = '';
    }
  }

  function hintOffline() {
    el.hint.textContent = 'You are offline: nothing was sent. It will be possible again once reconnected.';
  }

  function openSidebar() {
    if (!window.matchMedia('(max-width: 760px)').matches) return;
    el.body.classList.add('sidebar-open');
    el.toggle.setAttribute('aria-expanded', 'true');
    el.backdrop.hidden = false;
  }
  function closeSidebar() {
    if (!el.body.classList.contains('sidebar-open')) return;
    el.body.classList.remove('sidebar-open');
    el.toggle.setAttribute('aria-expanded', 'false');
    el.backdrop.hidden = true;
  }

  // ---------------------------------------------------------------- user input

  function say(view, text, action, replyTo) {
    const req = view.isPrivate
      ? { type: 'msg', to: view.label, text, ref: nextRef() }
      : { type: 'say', room: view.key, text, action: !!action, ref: nextRef() };
    if (Number.isInteger(replyTo)) req.reply_to = replyTo;
    if (!send(req)) { hintOffline(); return false; }
    addPending(view, req);
    return true;
  }

  function joinRoom(raw, source) {
    const name = String(raw || '').trim();
    if (!name) { el.roomError.textContent = 'Type a room name, e.g. #dev'; return false; }
    const key = normalizeRoom(name);
    if (key && state.views.has(key)) { selectView(key); el.roomError.textContent = ''; return true; }
    if (!request({ type: 'join', room: name }, 'join-' + source)) { hintOffline(); return false; }
    state.switchTo = key;
    el.roomError.textContent = '';
    return true;
  }

  const HELP = [
    '/join ROOM — join (or switch to) a room',
    '/part [ROOM] — leave a room (default: this one)',
    '/nick NAME — change your nickname',
    '/me ACTION — say something in the third person',
    '/msg NICK TEXT — private message',
    '/who [ROOM] — refresh the member list',
    '/rooms — list all rooms',
    '//text — send a message that starts with /',
  ];

  /** Run what was typed in the message box; returns true when it was consumed. */
  function runInput(line) {
    const view = currentView();
    const compose = state.compose;
    if (compose && compose.viewKey === (view && view.key)) {
      const li = findMessage(view, compose.id);
      if (!li) { endCompose(); localError('That message is gone'); return false; }
      if (compose.mode === 'edit') {
        if (!request({ type: 'edit', ...target(view, li), text: line }, 'update-edit')) { hintOffline(); return false; }
        endCompose();
        return true;
      }
      const text = line.startsWith('//') ? line.slice(1) : line;
      if (!say(view, text, false, compose.id)) return false;
      endCompose();
      return true;
    }
    if (!line.startsWith('/') || line.startsWith('//')) {
      const text = line.startsWith('//') ? line.slice(1) : line;
      if (!view) { localError('You are in no room: /join one first'); return false; }
      return say(view, text, false);
    }
    const m = /^\/(\S+)\s*([\s\S]*)$/.exec(line);
    const cmd = m ? m[1].toLowerCase() : '';
    const rest = m ? m[2].trim() : '';
    const args = rest ? rest.split(/\s+/) : [];
    switch (cmd) {
      case 'join': case 'j':
        if (!rest) { localError('usage: /join ROOM'); return false; }
        return joinRoom(rest, 'command');     // the server judges the name
      case 'part': case 'leave': {
        const key = args[0] ? normalizeRoom(args[0]) : state.current;
        if (key && key.startsWith('@')) { removeView(key); return true; }
        if (!key) { localError(args[0] ? 'not a room name: ' + args[0] : 'You are in no room'); return false; }
        if (!request({ type: 'part', room: key }, 'part-command')) { hintOffline(); return false; }
        return true;
      }
      case 'nick':
        if (!rest) { localError('usage: /nick NAME'); return false; }
        if (!request({ type: 'nick', nick: rest }, 'nick-command')) { hintOffline(); return false; }
        return true;
      case 'me':
        if (!rest) { localError('usage: /me ACTION'); return false; }
        if (!view || view.isPrivate) { localError('/me works in rooms only'); return false; }
        return say(view, rest, true);
      case 'msg': case 'query': {
        const mm = /^(\S+)\s+([\s\S]+)$/.exec(rest);
        if (!mm) { localError('usage: /msg NICK TEXT'); return false; }
        const target = mm[1];
        const key = '@' + target.toLowerCase();
        const existed = state.views.has(key);
        const pv = ensureView(key, target);
        if (!say(pv, mm[2], false)) { if (!existed) removeView(key); return false; }
        selectView(key);
        return true;
      }
      case 'who': {
        const key = args[0] ? normalizeRoom(args[0]) : state.current;
        if (!key || key.startsWith('@')) { localError('usage: /who [ROOM]'); return false; }
        if (!send({ type: 'who', room: key })) { hintOffline(); return false; }
        return true;
      }
      case 'rooms':
        if (!send({ type: 'rooms' })) { hintOffline(); return false; }
        return true;
      case 'help':
        for (const line of HELP) addSys(view, line, 'info');
        return true;
      default:
        localError('unknown command /' + cmd + ' (try /help)');
        return false;
    }
  }

  el.composer.addEventListener('submit', (e) => {
    e.preventDefault();
    const text = el.message.value;
    if (!text.trim()) return;
    if (!online()) { hintOffline(); return; }
    if (runInput(text)) { el.message.value = ''; state.typingRoom = null; }
    el.message.focus();
  });

  el.message.addEventListener('input', typed);
  el.message.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && state.compose) { e.preventDefault(); endCompose(); }
  });
  el.contextCancel.addEventListener('click', () => { endCompose(); el.message.focus(); });
  el.searchForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const text = el.searchInput.value.trim();
    if (!text) { el.searchSummary.textContent = 'Type words to search for.'; return; }
    if (!request({ type: 'search', text }, 'search-form')) { hintOffline(); return; }
    el.searchSummary.textContent = 'Searching…';
  });

  el.nickForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const nick = el.nick.value.trim();
    el.nickError.textContent = '';
    if (online()) {
      if (!nick) { el.nickError.textContent = 'Type a nickname.'; return; }
      if (nick === state.nick) return;
      request({ type: 'nick', nick }, 'nick-form');
      return;
    }
    // not connected: (re)connect with this nick
    state.wantedNick = nick;
    state.nickChosen = !!nick;
    state.attempt = 0;
    state.nickRetries = 0;
    connect();
  });

  el.joinForm.addEventListener('submit', (e) => {
    e.preventDefault();
    if (joinRoom(el.roomInput.value, 'form')) { el.roomInput.value = ''; closeSidebar(); }
  });

  el.toggle.addEventListener('click', () => {
    if (el.body.classList.contains('sidebar-open')) { closeSidebar(); return; }
    openSidebar();
    el.sidebarClose.focus();   // keyboard users land in the opened menu
  });
  el.backdrop.addEventListener('click', closeSidebar);
  el.sidebarClose.addEventListener('click', () => { closeSidebar(); el.toggle.focus(); });
  el.nick.addEventListener('input', () => { el.nickError.textContent = ''; });
  el.roomInput.addEventListener('input', () => { el.roomError.textContent = ''; });
  document.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && el.body.classList.contains('sidebar-open')) { closeSidebar(); el.toggle.focus(); }
  });
  el.retryNow.addEventListener('click', () => connect());
  // unread counts also grow in the current view while the tab is in the background
  document.addEventListener('visibilitychange', () => {
    const view = currentView();
    if (!document.hidden && view) { setUnread(view, 0); markReadSoon(); }
  });
  window.addEventListener('online', () => { if (state.status === 'reconnecting') connect(); });

  // ---------------------------------------------------------------- start

  const remembered = storageGet(STORE_NICK);
  refreshComposer();
  if (remembered) {
    // come back with the remembered nick; if it is taken the login form says so
    el.nick.value = remembered;
    state.wantedNick = remembered;
    state.nickChosen = true;
    connect();
  } else {
    el.nick.focus();
  }
})();
