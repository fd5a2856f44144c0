// One stock yjs + y-websocket client, driven by tests/yjs_support.py.
//
//   node yjs_peer.mjs --url ws://HOST:PORT/v1/yjs --room ROOM_ID --token TOKEN --name NAME \
//        [--expect-peers N] [--expect-tracks T] [--readonly | --denied] [--timeout SECONDS]
//
// Connects a WebsocketProvider to URL/ROOM_ID?token=TOKEN, waits for 'sync', sets the awareness
// state {user: NAME} and (unless --readonly) adds {"track": NAME} to the Y.Array "playlist" and
// "NAME;" to the Y.Text "notes" in one transaction. It then waits until the playlist holds T
// entries (default N) and it has seen N awareness users counting itself (default 1), prints
//   {"playlist": [...], "notes": "...", "awareness_peers": k, "permission_denied": [reason, ...]}
// (k = other users seen) as one JSON line and exits 0. Exits 1 with a message on stderr on timeout,
// connection error or a connection closed before that.
//
// --denied: a peer the server treats as read-only that edits anyway (twice: two update messages)
// and also waits until the stock provider has reported a permission-denied auth message. y-websocket
// hands that to its permissionDeniedHandler, which console.warns it; the reasons it warned are
// listed in "permission_denied". Its own entry stays in its local playlist, so it waits for T + 1.
import { parseArgs } from 'node:util'
import WebSocket from 'ws'
import { WebsocketProvider } from 'y-websocket'
import * as Y from 'yjs'

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' },
    room: { type: 'string' },
    token: { type: 'string', default: '' },
    name: { type: 'string' },
    'expect-peers': { type: 'string', default: '1' },
    'expect-tracks': { type: 'string' },
    readonly: { type: 'boolean', default: false },
    denied: { type: 'boolean', default: false },
    timeout: { type: 'string', default: '20' }
  }
})
for (const required of ['url', 'room', 'name']) {
  if (!args[required]) {
    process.stderr.write(`yjs_peer: --${required} is required\n`)
    process.exit(2)
  }
}
const name = args.name
const expectPeers = Number(args['expect-peers'])
const expectTracks = (args['expect-tracks'] === undefined ? expectPeers : Number(args['expect-tracks'])) +
  (args.denied ? 1 : 0)

const doc = new Y.Doc()
const playlist = doc.getArray('playlist')
const notes = doc.getText('notes')
const provider = new WebsocketProvider(args.url, args.room, doc, {
  WebSocketPolyfill: WebSocket,
  params: { token: args.token },
  disableBc: true // every byte must go through the server under test
})
const othersSeen = new Set() // awareness client IDs of other users, ever seen (they may leave first)
const denials = [] // reasons of the permission-denied messages the stock provider reported
let edited = false
let finished = false

// y-websocket's permissionDeniedHandler is console.warn(`Permission denied to access ${url}.\n${reason}`).
const warn = console.warn
const deniedPrefix = 'Permission denied to access '
console.warn = (...parts) => {
  const text = parts.join(' ')
  const split = text.indexOf('.\n')
  if (text.startsWith(deniedPrefix) && split >= 0) {
    denials.push(text.slice(split + 2))
    check()
    return
  }
  warn(...parts)
}

const fail = (message) => {
  if (finished) return
  finished = true
  process.stderr.write(
    `yjs_peer ${name}: ${message} (synced=${provider.synced}, playlist=${JSON.stringify(playlist.toJSON())}, ` +
    `others seen=${othersSeen.size})\n`
  )
  process.exit(1)
}

const check = () => {
  if (finished || !edited || playlist.length < expectTracks || othersSeen.size + 1 < expectPeers) return
  if (args.denied && denials.length === 0) return
  finished = true
  const result = {
    playlist: playlist.toJSON(),
    notes: notes.toString(),
    awareness_peers: othersSeen.size,
    permission_denied: denials
  }
  process.stdout.write(JSON.stringify(result) + '\n')
  clearTimeout(timer)
  const ws = provider.ws
  provider.destroy() // announces our awareness state as removed, then closes the socket
  const exit = () => process.exit(0)
  if (ws) ws.once('close', exit)
  setTimeout(exit, 1000)
}

provider.awareness.on('change', () => {
  for (const [clientID, state] of provider.awareness.getStates()) {
    if (clientID !== doc.clientID && state && state.user) othersSeen.add(clientID)
  }
  check()
})
doc.on('update', check)
provider.on('sync', (synced) => {
  if (!synced || edited) return
  provider.awareness.setLocalState({ user: name })
  if (!args.readonly) {
    doc.transact(() => {
      playlist.push([{ track: name }])
      notes.insert(notes.length, `${name};`)
    })
  }
  if (args.denied) doc.transact(() => notes.insert(notes.length, '!')) // a second refused update
  edited = true
  check()
})
provider.on('connection-error', () => fail('connection error'))
provider.on('connection-close', (event) => {
  fail(`connection closed${event ? ` (code ${event.code}${event.reason ? `: ${event.reason}` : ''})` : ''}`)
})
const timer = setTimeout(() => fail(`timed out after ${args.timeout} s`), Number(args.timeout) * 1000)
