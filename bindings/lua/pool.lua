-- pool - concur.Pool: worker processes fed through a Pipe each. Embedded in
-- the module; called with it.
--
-- The parent hands each idle worker one task (a function and the argument
-- lists of its calls) through that worker's duplex Pipe, and waits on all
-- the pipes at once (concur.wait) for results. A worker that dies shows as
-- EOF on its pipe: the task it had fails with WorkerLost and a new worker
-- takes its place. Results, and the callbacks, are handled in the parent
-- whenever it waits on the pool: get, wait, join, map, imap.
--
-- DESIGN (threads). Every thread of the process that made a pool may use
-- it. Its state changes under _mutex, an RLock (callbacks run under it, and
-- may use the pool). One thread at a time leads: it waits on the workers'
-- pipes with the mutex let go, then handles what came, with it held; the
-- others wait on _cond (a Condition of the mutex) until the leader has
-- handled a round or stepped down, when one of them leads. A thread that
-- hands out work while another leads writes to _wake, a pipe the leader
-- waits on too, so that it sends what could not go at once.
local concur, P = ...
local E = P.E

local Pool = {}
Pool.__index = Pool
Pool.__name = "concur.Pool"

local AsyncResult = {}
AsyncResult.__index = AsyncResult
AsyncResult.__name = "concur.AsyncResult"

-- The tasks not yet handed out: a deque, so that thousands of them cost
-- no more than a few.
local function deque() return {first = 1, last = 0} end
local function dq_len(d) return d.last - d.first + 1 end
local function dq_push(d, v) d.last = d.last + 1; d[d.last] = v end
local function dq_push_front(d, v) d.first = d.first - 1; d[d.first] = v end
local function dq_pop(d)
  if d.first > d.last then return nil end
  local v = d[d.first]
  d[d.first] = nil
  d.first = d.first + 1
  return v
end

local ERROR_MT = getmetatable(select(2, pcall(P.raise, E.REMOTE, "")))

-- The error object of a code of the error table, not raised.
local function new_error(code, message, fields)
  local e = setmetatable({kind = P.kind(code), message = message,
                          traceback = debug.traceback("", 3)}, ERROR_MT)
  for k, v in pairs(fields or {}) do e[k] = v end
  return e
end

-- What a task is: one call (apply), calls of one argument each (map), or
-- calls with a list of arguments each (starmap).
local CALL, MAP, STARMAP = 1, 2, 3

-- A job is a task in the parent: an AsyncResult (apply_async) or a part of
-- a map, with a method _done(ok, value) called once when it ends. Its
-- fields are slots of a list, made all at once: a table with named fields
-- costs several times more to make, and thousands of these are made in a
-- loop. STATE is false until the job ends, then "ok" or "failed"; VALUE is
-- an AsyncResult's value or error; the slots after it are the AsyncResult's
-- pool and callbacks, or the part's offset in the list and its whole.
local FN <const>, KIND <const>, COUNT <const>, PAYLOAD <const>, ID <const> = 1, 2, 3, 4, 5
local STATE <const>, VALUE <const> = 6, 7
local POOL <const>, CALLBACK <const>, ERROR_CALLBACK <const> = 8, 9, 10
local OFFSET <const>, WHOLE <const> = 8, 9

-- A task's calls, in the worker. A CALL gives the function's first result;
-- MAP and STARMAP the list of them, packed (a string the parent puts in
-- place in the whole list, with no list of its own on the way) unless it
-- holds objects, which travel only as the message's own references.
local function run_task(fn, kind, count, payload)
  if kind == CALL then return (fn(table.unpack(payload, 1, count))) end
  local values = P.newtable(count)
  if kind == MAP then
    for i = 1, count do values[i] = (fn(payload[i])) end
  else
    for i = 1, count do
      local args = payload[i]
      values[i] = (fn(table.unpack(args, 1, args.n or #args)))
    end
  end
  local ok, packed = pcall(P.pack, values)
  return ok and packed or values
end

-- A traceback of the user's frames only: from the first of the pool's own
-- (this chunk's) down, the levels are the pool's and, below the fork, the
-- parent's.
local function user_traceback(e)
  local tb = debug.traceback(tostring(e), 3)
  local head, rest = tb:match("^(.-stack traceback:)(.*)$")
  if not head then return tb end
  local kept = {}
  for line in rest:gmatch("\n[^\n]*") do
    if line:find("^\n\tpool:") then break end
    kept[#kept + 1] = line
  end
  if kept[#kept] and kept[#kept]:find("^\n\t%[C%]") then kept[#kept] = nil end
  return head .. table.concat(kept)
end

local function task_failed(e)
  return {msg = tostring(e), tb = user_traceback(e)}
end

-- How long a worker may keep finished results while it has more tasks at
-- hand: results of tiny tasks go back many to a message, and none waits
-- for long behind a slow task.
local REPLY_DELAY = 0.001

-- The life of a worker: run tasks until told to stop (nil) or maxtasks.
--
-- DESIGN: a message from the parent holds one or more tasks, flat:
-- id, function id, kind, count, payload, five slots per task, with the
-- functions not sent before in `fns`. The worker answers with the results
-- of the tasks it has run, flat too: id, ok, value, three per task, and
-- sends them when it has no more tasks at hand, or after REPLY_DELAY.
-- `progress` (shared memory) counts the tasks begun and ended, so that the
-- parent knows, if the worker dies, which task was running and which
-- results died with it.
local function worker(conn, others, progress, initializer, initargs, maxtasks)
  for _, c in ipairs(others) do c:close() end
  local me = concur.getpid()
  if initializer then
    -- A failed initializer is said to the parent, which fails the pool:
    -- made again, the worker would fail again, for good.
    local ok, err = xpcall(initializer, task_failed,
                           table.unpack(initargs or {}, 1, (initargs or {}).n))
    if not ok then
      conn:send({pid = me, n = 0, init_error = err})
      return
    end
  end
  local fns = {} -- functions are sent once per worker, then named by id
  local out, nout, since, busy = {pid = me}, 0, nil, 0
  local function flush(last)
    if nout == 0 and not last then return end
    out.n, out.last, out.busy = nout * 3, last or nil, busy
    local sent, why = pcall(conn.send, conn, out)
    if not sent and concur.is(why, P.kind(E.UNSENDABLE)) then
      -- Some result cannot travel: each goes on its own, and those that
      -- cannot become errors.
      for i = 1, nout * 3, 3 do
        local one = {pid = me, n = 3, last = (i == nout * 3 - 2) and last or nil,
                     busy = busy / nout, out[i], out[i + 1], out[i + 2]}
        if not pcall(conn.send, conn, one) then
          one[2], one[3] = false, {msg = "the result cannot be sent back: " .. tostring(why), tb = ""}
          conn:send(one)
        end
      end
    elseif not sent then
      error(why, 0) -- the parent is gone
    end
    out, nout, since, busy = {pid = me}, 0, nil, 0
  end
  -- A task that ends its worker with os.exit still lets the results before
  -- it go back.
  local exit = os.exit
  os.exit = function(...)
    pcall(flush)
    return exit(...)
  end
  local done = 0
  while true do
    if nout > 0 and not conn:poll(0) then flush() end
    local ok, msg = pcall(conn.recv, conn)
    if not ok or msg == nil then return end
    if msg.fns then
      for fid, fn in pairs(msg.fns) do fns[fid] = fn end
    end
    for i = 1, msg.n, 5 do
      local t0, traced = concur.time(), P.trace_now()
      progress[1] = progress[1] + 1
      local good, value = xpcall(run_task, task_failed, fns[msg[i + 1]], msg[i + 2], msg[i + 3],
                                 msg[i + 4])
      progress[2] = progress[2] + 1
      if traced then P.trace_task(traced, fns[msg[i + 1]]) end
      out[nout * 3 + 1], out[nout * 3 + 2], out[nout * 3 + 3] = msg[i], good, value
      nout = nout + 1
      local t1 = concur.time()
      busy = busy + (t1 - t0)
      since = since or t1
      done = done + 1
      -- The last reply says so; the parent sends no more than maxtasks.
      if maxtasks and done >= maxtasks then
        flush(true)
        return
      end
      if t1 - since >= REPLY_DELAY then flush() end
    end
  end
end

function Pool:_spawn(slot)
  local parent_end, child_end = concur.Pipe()
  local others = {self._wake_r, self._wake_w}
  for _, w in pairs(self._workers) do others[#others + 1] = w.conn end
  local progress = concur.RawArray('q', 2)
  local p = concur.Process{target = worker, daemon = true,
                           args = {child_end, others, progress, self._initializer,
                                   self._initargs, self._maxtasks},
                           name = ("PoolWorker-%d"):format(self._spawned + 1)}
  self._spawned = self._spawned + 1
  p:start()
  child_end:close()
  self._workers[slot] = {proc = p, conn = parent_end, pid = p.pid, jobs = deque(), fids = {},
                         progress = progress, replied = 0, budget = self._maxtasks, since = 0}
  self._conns = nil
end

local POOL_OPTIONS = {"processes", "initializer", "initargs", "maxtasksperchild"}
local RESULT_OPTIONS = {"callback", "error_callback"}

local function construct(cls, opts)
  opts = opts or {}
  if type(opts) == "number" then opts = {processes = opts} end
  if type(opts) ~= "table" then
    P.raise(E.VALUE, "Pool takes a number of processes or a table of options: " ..
                 "Pool(4), Pool{processes = 4, maxtasksperchild = 10}")
  end
  P.check_fields(opts, "Pool", 1, POOL_OPTIONS)
  local init = opts.initializer
  if init ~= nil and type(init) ~= "function" and not (getmetatable(init) or {}).__call then
    P.raise(E.VALUE, ("initializer must be a function, not %s"):format(type(init)))
  end
  if opts.initargs ~= nil and type(opts.initargs) ~= "table" then
    P.raise(E.VALUE, ("initargs must be a table of arguments, not %s")
      :format(type(opts.initargs)))
  end
  local n = opts.processes or P.pool_processes or concur.cpu_count()
  if math.type(n) ~= "integer" or n < 1 then
    P.raise(E.VALUE, "processes must be a whole number of at least 1")
  end
  if opts.maxtasksperchild ~= nil and (math.type(opts.maxtasksperchild) ~= "integer"
                                       or opts.maxtasksperchild < 1) then
    P.raise(E.VALUE, "maxtasksperchild must be a whole number of at least 1")
  end
  local mutex = concur.RLock()
  local wake_r, wake_w = concur.Pipe(false)
  local self = setmetatable({_n = n, _initializer = opts.initializer, _initargs = opts.initargs,
                             _maxtasks = opts.maxtasksperchild, _workers = {}, _pending = deque(),
                             _next_id = 0, _state = "running", _spawned = 0,
                             _creator = concur.getpid(), _outstanding = 0, _rr = 0,
                             _fids = setmetatable({}, {__mode = "k"}), _next_fid = 0,
                             _mutex = mutex, _cond = concur.Condition(mutex), _leader = false,
                             _followers = 0, _wake_r = wake_r, _wake_w = wake_w,
                             _woken = false}, cls)
  mutex:with(function() for i = 1, n do self:_spawn(i) end end)
  return self
end

setmetatable(Pool, {__call = construct})

function Pool:_check()
  if self._broken then P.raise(E.PROC, self._broken .. ": make a new pool") end
  if self._state ~= "running" then
    P.raise(E.PROC, ("the pool is %s: make a new one"):format(self._state))
  end
  if self._creator ~= concur.getpid() then
    P.raise(E.PROC, "a pool can only be used by the process that made it")
  end
end

-- Queues a job; with `later`, the caller hands the queue out once it has
-- queued all of a map's parts (so that they go to the idle workers first).
function Pool:_submit(job, later)
  local fn = job[FN]
  if type(fn) ~= "function" and not (getmetatable(fn) or {}).__call then
    P.raise(E.VALUE, "a pool task needs a function")
  end
  self._next_id = self._next_id + 1
  job[ID] = self._next_id
  local pending = self._pending
  dq_push(pending, job)
  self._outstanding = self._outstanding + 1
  -- With others still waiting, every worker is full: the next _pump sends.
  if not later and pending.first == pending.last then
    self:_dispatch()
    self:_nudge()
  end
  return job
end

function Pool:_submitted()
  self:_dispatch()
  self:_nudge()
end

function Pool:_finish(job, ok, value)
  if job[STATE] then return end
  job[STATE] = ok and "ok" or "failed"
  self._outstanding = self._outstanding - 1
  job[FN], job[PAYLOAD] = false, false
  job:_done(ok, value)
end

-- How many tasks a worker has in its pipe. The workers cannot take work
-- from each other's pipes, so a task queued behind a slow one waits for
-- it: slow tasks (SLOW seconds and more, by the time tasks have taken so
-- far) go one at a time; others two at a time, so that a worker has its
-- next task at hand while the parent handles its last result, and tiny
-- ones up to QUEUED_WORK seconds' worth (at most MAX_IN_FLIGHT), so that
-- they travel many to a message.
local QUEUED_WORK, SLOW, MAX_IN_FLIGHT = 0.002, 0.05, 64

function Pool:_depth()
  local t = self._task_time
  local depth = 2
  if t and t >= SLOW then
    depth = 1
  elseif t and t * MAX_IN_FLIGHT < QUEUED_WORK then
    depth = MAX_IN_FLIGHT
  elseif t then
    depth = math.max(2, math.ceil(QUEUED_WORK / t))
  end
  return math.min(depth, -(-self._outstanding // self._n))
end

-- An Unsendable of a job's message says where the value was in the job's
-- slot of it (obj[5]...): said again as where the user put it, in the
-- task's args or the map's list.
local function user_path(job, err)
  local rest = err.message:match("^obj%[5%](.*)$")
  if rest and job[KIND] == CALL then
    err.message = "args" .. rest
  elseif rest then
    local k, tail = rest:match("^%[(%d+)%](.*)$")
    if k then err.message = ("list[%d]"):format(job[8] + tonumber(k)) .. tail end
  end
  return err
end

-- Sends jobs (a list) to worker w as one message. A job that cannot be
-- sent fails with Unsendable; if the worker is gone, the jobs go back to
-- the front of the queue.
function Pool:_send(w, jobs)
  local n = #jobs
  local msg = P.newtable(n * 5, 2)
  local fns, fids, wfids = nil, self._fids, w.fids
  local last_fn, fid
  for i = 1, n do
    local job = jobs[i]
    local fn = job[FN]
    if fn ~= last_fn then
      last_fn, fid = fn, fids[fn]
      if not fid then
        self._next_fid = self._next_fid + 1
        fid = self._next_fid
        fids[fn] = fid
      end
      if not wfids[fid] then
        fns = fns or {}
        fns[fid] = fn
      end
    end
    local b = (i - 1) * 5
    msg[b + 1], msg[b + 2], msg[b + 3], msg[b + 4], msg[b + 5] =
      job[ID], fid, job[KIND], job[COUNT], job[PAYLOAD]
  end
  msg.n, msg.fns = n * 5, fns
  -- Never blocks: a worker busy sending its results must not wait for a
  -- parent that waits to send it more work.
  local ok, err = pcall(w.conn.send_nowait, w.conn, msg)
  if ok then
    if fns then
      for f in pairs(fns) do wfids[f] = true end
    end
    local q = w.jobs
    for i = 1, n do q[q.last + i] = jobs[i] end
    q.last = q.last + n
    if w.budget then w.budget = w.budget - n end
  elseif concur.is(err, P.kind(E.UNSENDABLE)) then
    if n == 1 then
      self:_finish(jobs[1], false, user_path(jobs[1], err))
    else
      for i = 1, n do
        if w.gone then
          dq_push(self._pending, jobs[i])
        else
          self:_send(w, {jobs[i]})
        end
      end
    end
  else
    for i = n, 1, -1 do dq_push_front(self._pending, jobs[i]) end
    w.gone = true -- its pipe's EOF reaches _pump, which replaces it
  end
end

-- Hands pending work out, in turn from the one after the last served, as
-- many tasks as each has room for, in one message: to idle workers first.
-- When one was idle, what is left waits here for the first that finishes:
-- a busy worker's task may be long (it cannot pass work on), whatever the
-- time it has taken so far. When none was, busy ones whose work in hand
-- began less than SLOW seconds ago get their next tasks at hand.
function Pool:_dispatch()
  local pending = self._pending
  if dq_len(pending) == 0 then return end
  local depth = self:_depth()
  local now = concur.time()
  local fed = 0
  for pass = 1, 2 do
    if pass == 2 and fed > 0 then return end
    for k = 1, self._n do
      local slot = (self._rr + k - 1) % self._n + 1
      local w = self._workers[slot]
      local held = w and dq_len(w.jobs) or 0
      if w and not w.gone and not w.retiring and
         (pass == 1 and held == 0 or pass == 2 and held > 0 and now - w.since < SLOW) then
        local room = math.min(depth - held, w.budget or depth, dq_len(pending))
        if room > 0 then
          local jobs = {}
          for i = 1, room do jobs[i] = dq_pop(pending) end
          if held == 0 then w.since = now; fed = fed + 1 end
          self:_send(w, jobs)
          self._rr = slot
          if dq_len(pending) == 0 then return end
        end
      end
    end
  end
end

-- A worker's pipe said EOF: it ended (maxtasksperchild) or died. Its
-- progress counters tell which results died with it and which task it was
-- running; both fail with WorkerLost, and those it had not begun go to
-- the others.
function Pool:_lost(slot)
  local w = self._workers[slot]
  w.conn:close()
  w.proc:join(5)
  local code = tostring(w.proc.exitcode)
  local ended = w.progress[2] - w.replied
  local running = w.progress[1] - w.progress[2]
  for _ = 1, ended do
    local job = dq_pop(w.jobs)
    if not job then break end
    self:_finish(job, false, new_error(E.LOST,
      ("the worker (pid %d) died (exit code %s) before sending this task's result"):format(w.pid, code)))
  end
  if running > 0 and dq_len(w.jobs) > 0 then
    self:_finish(dq_pop(w.jobs), false, new_error(E.LOST,
      ("the worker (pid %d) running this task died (exit code %s)"):format(w.pid, code)))
  end
  for i = w.jobs.last, w.jobs.first, -1 do dq_push_front(self._pending, w.jobs[i]) end
  -- Its counters go now, not when they are collected: the worker forked
  -- next would hold them (a child holds what its parent holds) for life.
  do local _ <close> = w.progress end
  self._workers[slot] = nil
  self._conns = nil
  if self._state ~= "terminated" and (self._state == "running" or self._outstanding > 0) then
    self:_spawn(slot)
  end
end

-- A worker's reply: the results of its oldest tasks, in order.
-- A worker's initializer failed: so would every worker's. The pool fails
-- what it was given and takes nothing more.
function Pool:_init_failed(w, err)
  local why = ("the pool's initializer failed in worker %d: %s"):format(w.pid, err.msg)
  self._broken = why
  local function fail(job)
    self:_finish(job, false, new_error(E.REMOTE, why, {remote_traceback = err.tb}))
  end
  for _, other in pairs(self._workers) do
    while dq_len(other.jobs) > 0 do fail(dq_pop(other.jobs)) end
  end
  while dq_len(self._pending) > 0 do fail(dq_pop(self._pending)) end
  self:terminate()
end

function Pool:_handle(w, reply)
  if reply.init_error then return self:_init_failed(w, reply.init_error) end
  local n, q = reply.n, w.jobs
  if n > 0 then
    local per = reply.busy / (n // 3)
    self._task_time = self._task_time and self._task_time * 0.75 + per * 0.25 or per
    w.replied = w.replied + n // 3
  end
  for i = 1, n, 3 do
    local job = q[q.first]
    if not job or job[ID] ~= reply[i] then
      P.raise(E.PROC, "a pool worker answered out of turn")
    end
    q[q.first] = nil
    q.first = q.first + 1
    if reply[i + 1] then
      self:_finish(job, true, reply[i + 2])
    else
      local err = reply[i + 2]
      self:_finish(job, false, new_error(E.REMOTE,
        ("a pool task failed in worker %d: %s"):format(reply.pid, err.msg), {remote_traceback = err.tb}))
    end
  end
  w.since = concur.time() -- what it holds now began about now
  if reply.last then
    -- It ends after this reply: what it had not begun goes elsewhere.
    w.retiring = true
    for i = q.last, q.first, -1 do dq_push_front(self._pending, q[i]) end
    w.jobs = deque()
  end
end

-- The leader's round: handles what the workers sent within timeout seconds
-- (nil: until something comes), letting go of the mutex while it waits.
-- Returns true when something was handled.
function Pool:_pump(timeout)
  self:_dispatch()
  if not self._conns then
    local conns, slots = {}, {}
    for slot = 1, self._n do
      local w = self._workers[slot]
      if w then
        conns[#conns + 1] = w.conn
        slots[w.conn] = slot
      end
    end
    if #conns > 0 then conns[#conns + 1] = self._wake_r end
    self._conns, self._slots = conns, slots
  end
  if #self._conns == 0 then return false end
  local mutex = self._mutex
  local depth = mutex:_release_save()
  local ok, ready = pcall(P.wait_results, self._conns, timeout)
  mutex:_acquire_restore(depth)
  if not ok then error(ready, 0) end
  local handled = false
  for _, c in ipairs(ready) do
    local slot = self._slots[c]
    local w = slot and self._workers[slot]
    if c == self._wake_r then
      self._woken = false
      while c:poll() do c:recv_bytes() end
    -- While it waited, the pool may have lost this worker or been
    -- terminated by another thread; and another leader may have read it.
    elseif w and w.conn == c and self._state ~= "terminated" and c:poll() then
      handled = true
      local got, reply = pcall(c.recv, c)
      if got then
        self:_handle(w, reply)
      elseif concur.is(reply, P.kind(E.EOF)) or concur.is(reply, P.kind(E.SYS)) then
        self:_lost(slot)
      else
        error(reply, 0)
      end
    end
  end
  self:_dispatch()
  return handled
end

-- Waits for some progress, within timeout seconds (nil: until there is
-- some), the mutex held: leads, or follows the thread that leads. True
-- when something may have changed.
function Pool:_wait_some(timeout)
  local me = concur.current_thread()
  local leader = self._leader
  if leader and leader ~= me then
    if timeout == 0 then return false end
    self._followers = self._followers + 1
    local ok, err = pcall(self._cond.wait, self._cond, timeout)
    self._followers = self._followers - 1
    if not ok then error(err, 0) end
    return true
  end
  self._leader = me -- or was already: a callback that waits on the pool
  local ok, got = pcall(self._pump, self, timeout)
  self._leader = leader
  if self._followers > 0 then self._cond:notify_all() end
  if not ok then error(got, 0) end
  return got
end

-- Work was handed out, or the state changed, by a thread that does not
-- lead: the leader must look (it sends what could not go at once).
function Pool:_nudge()
  local leader = self._leader
  if leader and leader ~= concur.current_thread() and not self._woken then
    self._woken = true
    pcall(self._wake_w.send_bytes, self._wake_w, "")
  end
end

-- Runs self:method(...) with the mutex held.
local function locked(method)
  return function(self, ...)
    return self._mutex:with(method, self, ...)
  end
end

-- Scaled timeouts: the pool waits in real seconds like every concur call.
local function deadline(timeout)
  return timeout and concur.time() + timeout * concur.time_scale or nil
end

local function remaining(dl)
  if not dl then return nil end
  return math.max(0, (dl - concur.time()) / concur.time_scale)
end

-- An AsyncResult ends once: its value or error kept in _value, its
-- callback run.
local function complete(r, ok, value)
  r[STATE], r[VALUE] = ok and "ok" or "failed", value
  if ok then
    if r[CALLBACK] then
      local good, err = pcall(r[CALLBACK], value)
      if not good then io.stderr:write("concur: error in a pool callback: ", tostring(err), "\n") end
    end
  else
    if r[ERROR_CALLBACK] then
      local good, err = pcall(r[ERROR_CALLBACK], value)
      if not good then io.stderr:write("concur: error in a pool error_callback: ", tostring(err), "\n") end
    end
  end
end

local function new_result(pool, opts, fn, kind, count, payload)
  return setmetatable({fn or false, kind or false, count or false, payload or false, 0, false,
                       false, pool, opts and opts.callback or false,
                       opts and opts.error_callback or false}, AsyncResult)
end

-- apply_async's AsyncResult is its own job.
AsyncResult._done = complete

local function ready(r)
  if not r[STATE] then r[POOL]:_wait_some(0) end
  return r[STATE] ~= false
end

function AsyncResult:ready()
  if self[STATE] then return true end
  return self[POOL]._mutex:with(ready, self)
end

local function wait(r, timeout)
  local dl = deadline(timeout)
  while not r[STATE] do
    local left = remaining(dl)
    if left == 0 then break end
    r[POOL]:_wait_some(left)
  end
  return r[STATE] ~= false
end

-- A timeout as every blocking method takes it: seconds, nil, or Python's
-- keyword, {timeout = s}.
local TIMEOUT_KEYWORD = {"timeout"}
local function check_timeout(timeout, fn)
  if type(timeout) == "table" and getmetatable(timeout) == nil then
    P.check_fields(timeout, fn, 1, TIMEOUT_KEYWORD, 3) -- the user's get or wait
    timeout = timeout.timeout
  end
  if timeout ~= nil and (type(timeout) ~= "number" or timeout ~= timeout or timeout < 0) then
    error(("bad argument #1 to '%s' (timeout must be a number of seconds, not negative: got %s)")
      :format(fn, tostring(timeout)), 3)
  end
  return timeout
end

function AsyncResult:wait(timeout)
  timeout = check_timeout(timeout, "wait")
  if self[STATE] then return true end
  return self[POOL]._mutex:with(wait, self, timeout)
end

function AsyncResult:get(timeout)
  timeout = check_timeout(timeout, "get")
  if not self:wait(timeout) then
    P.raise(E.TIMEDOUT, ("the result was not ready after %g s"):format(timeout))
  end
  if self[STATE] ~= "ok" then error(self[VALUE], 2) end
  return self[VALUE]
end

function AsyncResult:successful()
  if not self:ready() then P.raise(E.VALUE, "the result is not ready yet") end
  return self[STATE] == "ok"
end

AsyncResult.__tostring = function(r)
  return ("AsyncResult(%s)"):format(not r[STATE] and "pending" or r[STATE] == "ok" and "ready"
                                    or "failed")
end

-- An argument list and its length (args.n, else #args); the table is sent
-- as it is.
local function arg_count(args)
  if type(args) ~= "table" then P.raise(E.VALUE, "args must be a table") end
  return args.n or #args
end

local NO_ARGS = {}

local apply_async = locked(function(self, fn, args, opts)
  self:_check()
  local r
  if args == nil then
    r = new_result(self, opts, fn, CALL, 0, NO_ARGS)
  else
    r = new_result(self, opts, fn, CALL, arg_count(args), args)
  end
  return self:_submit(r)
end)

function Pool:apply_async(fn, args, opts)
  if opts ~= nil then P.check_fields(opts, "apply_async", 3, RESULT_OPTIONS) end
  return apply_async(self, fn, args, opts)
end

function Pool:apply(fn, args)
  return self:apply_async(fn, args):get()
end

-- The parts of a map: each puts its values in place in the whole; the
-- first failure ends the map.
local Part = {}
Part.__index = Part

function Part:_done(ok, values)
  local whole = self[WHOLE]
  if whole.failed then return end
  if not ok then
    whole.failed = true
    complete(whole.result, false, values)
    return
  end
  if type(values) == "string" then
    P.unpack_into(values, whole.values, self[OFFSET])
  else
    table.move(values, 1, self[COUNT], self[OFFSET] + 1, whole.values)
  end
  whole.left = whole.left - 1
  if whole.left == 0 then complete(whole.result, true, whole.values) end
end

-- The list cut into parts of `size` calls, one at a time (so the first
-- goes out before the last is cut): the items themselves for map, the
-- argument lists for starmap. Yields each part's offset, kind, count and
-- payload.
local function parts(list, size, star, copy)
  local n, first = #list, 1
  return function()
    if first > n then return nil end
    local last = math.min(n, first + size - 1)
    local offset = first - 1
    first = last + 1
    local payload = (copy and P.slice or P.view)(list, offset + 1, last)
    if star then
      for i = offset + 1, last do arg_count(list[i]) end
    end
    return offset, star and STARMAP or MAP, last - offset, payload
  end
end

local function default_chunksize(self, n)
  local c = n // (self._n * 4)
  if n % (self._n * 4) ~= 0 then c = c + 1 end
  return math.max(1, c)
end

local function check_map(self, fn, list, chunksize)
  self:_check()
  if type(list) ~= "table" then P.raise(E.VALUE, "map takes a list") end
  if chunksize ~= nil and (math.type(chunksize) ~= "integer" or chunksize < 1) then
    P.raise(E.VALUE, "chunksize must be a whole number of at least 1")
  end
end

-- map and starmap send views of the list (it cannot change while they
-- wait, but in callbacks); the _async ones and imap send copies, made now.
Pool._map_async = locked(function(self, fn, list, chunksize, star, opts, view)
  check_map(self, fn, list, chunksize)
  chunksize = chunksize or default_chunksize(self, #list)
  local r = new_result(self, opts)
  local whole = {result = r, values = P.newtable(#list), left = -(-#list // chunksize)}
  if whole.left == 0 then
    complete(r, true, {})
    return r
  end
  for offset, kind, count, payload in parts(list, chunksize, star, not view) do
    self:_submit(setmetatable({fn, kind, count, payload, 0, false, false, offset, whole}, Part), true)
  end
  self:_submitted()
  return r
end)

-- Python's keywords in one table in chunksize's place: map(f, xs,
-- {chunksize = 4}), map_async(f, xs, {chunksize = 4, callback = cb}).
local MAP_KEYWORDS, SYNC_MAP_KEYWORDS = {"chunksize", "callback", "error_callback"}, {"chunksize"}

-- Checked at the line of the user's call (3: keywords, the method, the user).
local function keywords(name, chunksize, opts, async)
  if type(chunksize) == "table" and getmetatable(chunksize) == nil then
    if opts ~= nil then
      P.raise(E.VALUE, name .. " takes its keywords in one table, after the list")
    end
    P.check_fields(chunksize, name, 3, async and MAP_KEYWORDS or SYNC_MAP_KEYWORDS, 3)
    return chunksize.chunksize, async and chunksize or nil
  end
  if opts ~= nil then P.check_fields(opts, name, 4, RESULT_OPTIONS, 3) end
  return chunksize, opts
end

function Pool:map_async(fn, list, chunksize, opts)
  chunksize, opts = keywords("map_async", chunksize, opts, true)
  return self:_map_async(fn, list, chunksize, false, opts)
end
function Pool:map(fn, list, chunksize)
  chunksize = keywords("map", chunksize, nil, false)
  return self:_map_async(fn, list, chunksize, false, nil, true):get()
end
function Pool:starmap_async(fn, list, chunksize, opts)
  chunksize, opts = keywords("starmap_async", chunksize, opts, true)
  return self:_map_async(fn, list, chunksize, true, opts)
end
function Pool:starmap(fn, list, chunksize)
  chunksize = keywords("starmap", chunksize, nil, false)
  return self:_map_async(fn, list, chunksize, true, nil, true):get()
end

-- The parts of an imap: their values wait in `arrived` until taken.
local IPart = {}
IPart.__index = IPart

function IPart:_done(ok, values)
  local it = self[WHOLE]
  if not ok then
    it.err = it.err or values
    return
  end
  if type(values) == "string" then
    local list = P.newtable(self[COUNT])
    P.unpack_into(values, list, 0)
    values = list
  end
  local offset = self[OFFSET]
  for i = 1, self[COUNT] do
    it.arrived[offset + i] = {values[i]}
    it.norder = it.norder + 1
    it.order[it.norder] = offset + i
  end
end

-- imap and imap_unordered: iterators of index, value; lazy, so the first
-- result comes as soon as it is ready.
Pool._imap = locked(function(self, fn, list, chunksize, ordered)
  check_map(self, fn, list, chunksize)
  local it = {arrived = {}, order = {}, norder = 0}
  for offset, kind, count, payload in parts(list, chunksize or 1, false, true) do
    self:_submit(setmetatable({fn, kind, count, payload, 0, false, false, offset, it}, IPart), true)
  end
  self:_submitted()
  local next_i, total, taken, head = 1, #list, 0, 1
  local function step()
    while true do
      if it.err then error(it.err, 2) end
      if ordered then
        if next_i > total then return nil end
        local got = it.arrived[next_i]
        if got then
          it.arrived[next_i] = nil
          next_i = next_i + 1
          return next_i - 1, got[1]
        end
      else
        if taken >= total then return nil end
        local i = it.order[head]
        if i then
          it.order[head] = nil
          head = head + 1
          local got = it.arrived[i]
          it.arrived[i] = nil
          taken = taken + 1
          return i, got[1]
        end
      end
      self:_wait_some(nil)
    end
  end
  return function() return self._mutex:with(step) end
end)

function Pool:imap(fn, list, chunksize) return self:_imap(fn, list, chunksize, true) end
function Pool:imap_unordered(fn, list, chunksize) return self:_imap(fn, list, chunksize, false) end

Pool.close = locked(function(self)
  if self._state == "running" then self._state = "closed" end
  self:_nudge()
end)

-- join(): after close, waits for every task (running the callbacks), then
-- for the workers to end.
Pool.join = locked(function(self)
  if self._state == "running" then
    P.raise(E.VALUE, "the pool is still running: close() or terminate() it before join()")
  end
  while self._outstanding > 0 and self._state ~= "terminated" do self:_wait_some(nil) end
  for slot, w in pairs(self._workers) do
    pcall(w.conn.send, w.conn, nil)
  end
  for slot, w in pairs(self._workers) do
    w.proc:join()
    w.conn:close()
    self._workers[slot] = nil
  end
  self._conns = nil
end)

Pool.terminate = locked(function(self)
  if self._state == "terminated" then return end
  self._state = "terminated"
  -- Every task not ended is in a worker's pipe or in the queue.
  local left = {}
  for slot = 1, self._n do
    local w = self._workers[slot]
    if w then
      for i = w.jobs.first, w.jobs.last do left[#left + 1] = w.jobs[i] end
      w.proc:terminate()
    end
  end
  for i = self._pending.first, self._pending.last do left[#left + 1] = self._pending[i] end
  self._pending = deque()
  for slot, w in pairs(self._workers) do
    w.proc:join()
    w.conn:close()
    self._workers[slot] = nil
  end
  self._conns = nil
  for _, job in ipairs(left) do
    self:_finish(job, false, new_error(E.PROC, "the pool was terminated before this task ended"))
  end
  self:_nudge()
end)

function Pool:workers()
  local pids = {}
  for slot = 1, self._n do
    if self._workers[slot] then pids[#pids + 1] = self._workers[slot].pid end
  end
  return pids
end

Pool.__close = function(p) if p._creator == concur.getpid() then p:terminate() end end
-- Collected, it terminates its workers, unless another thread holds its
-- mutex: a finalizer must not wait for it (at the end of a run no other
-- thread runs again, and the workers, daemons, are ended with the run).
Pool.__gc = function(p)
  if p._creator == concur.getpid() and p._mutex:acquire(false) then
    p:terminate()
    p._mutex:release()
  end
end
Pool.__tostring = function(p)
  return ("Pool(%d processes, %s, %d tasks outstanding)"):format(p._n, p._state, p._outstanding)
end

return Pool
