-- pool - concur.Pool: worker processes fed through a Pipe each. Embedded in
-- the module; called with it.
--
-- The parent hands each idle worker one task (a function and the argument
-- lists of its calls) through that worker's duplex Pipe, and waits on all
-- the pipes at once (concur.wait) for results. A worker that dies shows as
-- EOF on its pipe: the task it had fails with WorkerLost and a new worker
-- takes its place. Results, and the callbacks, are handled in the parent
-- whenever it waits on the pool: get, wait, join, map, imap.
local concur = ...

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

local ERROR_MT = getmetatable(select(2, pcall(concur.error, "RemoteError", "")))

local function new_error(kind, message, fields)
  local e = setmetatable({kind = kind, message = message, traceback = debug.traceback("", 3)},
                         ERROR_MT)
  for k, v in pairs(fields or {}) do e[k] = v end
  return e
end

-- The life of a worker: run tasks until told to stop (nil) or maxtasks.
local function worker(conn, others, initializer, initargs, maxtasks)
  for _, c in ipairs(others) do c:close() end
  if initializer then initializer(table.unpack(initargs or {}, 1, (initargs or {}).n)) end
  local me = concur.getpid()
  local done = 0
  local function fail(e)
    return {msg = tostring(e), tb = debug.traceback(tostring(e), 2)}
  end
  local fns = {} -- functions are sent once per worker, then named by id
  while true do
    local ok, task = pcall(conn.recv, conn)
    if not ok or task == nil then return end
    if task.fn then fns[task.fid] = task.fn end
    local fn = fns[task.fid]
    local values = {}
    local good, err = xpcall(function()
      if task.items then -- map: one argument per call, sent as it is
        local items = task.items
        for i = 1, task.count do values[i] = (fn(items[i])) end
      else
        for i, args in ipairs(task.calls) do
          values[i] = (fn(table.unpack(args, 1, args.n)))
        end
      end
    end, fail)
    done = done + 1
    -- The last reply says so, so that no task is sent to a worker that ends.
    local last = maxtasks and done >= maxtasks or nil
    local reply = good and {id = task.id, ok = true, values = values, pid = me, last = last}
                       or {id = task.id, ok = false, err = err, pid = me, last = last}
    local sent, why = pcall(conn.send, conn, reply)
    if not sent then
      conn:send({id = task.id, ok = false, pid = me, last = last,
                 err = {msg = "the result cannot be sent back: " .. tostring(why), tb = ""}})
    end
    if last then return end
  end
end

function Pool:_spawn(slot)
  local parent_end, child_end = concur.Pipe()
  local others = {}
  for _, w in pairs(self._workers) do others[#others + 1] = w.conn end
  local p = concur.Process{target = worker, daemon = true,
                           args = {child_end, others, self._initializer, self._initargs,
                                   self._maxtasks},
                           name = ("PoolWorker-%d"):format(self._spawned + 1)}
  self._spawned = self._spawned + 1
  p:start()
  child_end:close()
  self._workers[slot] = {proc = p, conn = parent_end, pid = p.pid, jobs = {}, fids = {}}
end

local function construct(cls, opts)
  opts = opts or {}
  if type(opts) == "number" then opts = {processes = opts} end
  local n = opts.processes or concur._pool_processes or concur.cpu_count()
  if math.type(n) ~= "integer" or n < 1 then
    concur.error("ValueError", "processes must be a whole number of at least 1")
  end
  if opts.maxtasksperchild ~= nil and (math.type(opts.maxtasksperchild) ~= "integer"
                                       or opts.maxtasksperchild < 1) then
    concur.error("ValueError", "maxtasksperchild must be a whole number of at least 1")
  end
  local self = setmetatable({_n = n, _initializer = opts.initializer, _initargs = opts.initargs,
                             _maxtasks = opts.maxtasksperchild, _workers = {}, _pending = deque(),
                             _jobs = {}, _next_id = 0, _state = "running", _spawned = 0,
                             _creator = concur.getpid(), _outstanding = 0, _rr = 0,
                             _fids = setmetatable({}, {__mode = "k"}), _next_fid = 0}, cls)
  for i = 1, n do self:_spawn(i) end
  return self
end

setmetatable(Pool, {__call = construct})

function Pool:_check()
  if self._state ~= "running" then
    concur.error("ProcessError", ("the pool is %s: make a new one"):format(self._state))
  end
  if self._creator ~= concur.getpid() then
    concur.error("ProcessError", "a pool can only be used by the process that made it")
  end
end

-- A job: calls of fn (a list of argument lists, or for map a list of single
-- arguments: {items = ..., count = n}); on_result(ok, values_or_err).
function Pool:_submit(fn, calls, on_result)
  if type(fn) ~= "function" and not (getmetatable(fn) or {}).__call then
    concur.error("ValueError", "a pool task needs a function")
  end
  self._next_id = self._next_id + 1
  local job = {id = self._next_id, fn = fn, on_result = on_result}
  if calls.items then
    job.items, job.count = calls.items, calls.count
  else
    job.calls = calls
  end
  self._jobs[job.id] = job
  dq_push(self._pending, job)
  self._outstanding = self._outstanding + 1
  self:_dispatch()
  return job
end

function Pool:_finish(job, ok, value)
  if job.finished then return end
  job.finished = true
  self._jobs[job.id] = nil
  self._outstanding = self._outstanding - 1
  job.on_result(ok, value)
end

-- Workers get the pending tasks in turn, from the one after the last served,
-- a few at a time when there are many (so that tiny tasks do not wait for a
-- round trip each); a function goes to a worker once, then by its id.
local MAX_IN_FLIGHT = 16

function Pool:_dispatch()
  local depth = math.max(1, math.min(MAX_IN_FLIGHT, -(-self._outstanding // self._n)))
  local progress = true
  while dq_len(self._pending) > 0 and progress do
    progress = false
    for k = 1, self._n do
      if dq_len(self._pending) == 0 then return end
      local slot = (self._rr + k - 1) % self._n + 1
      local w = self._workers[slot]
      if w and not w.gone and not w.retiring and #w.jobs < depth then
        local job = dq_pop(self._pending)
        local fid = self._fids[job.fn]
        if not fid then
          self._next_fid = self._next_fid + 1
          fid = self._next_fid
          self._fids[job.fn] = fid
        end
        local msg = {id = job.id, fid = fid, calls = job.calls, items = job.items,
                     count = job.count}
        if not w.fids[fid] then msg.fn = job.fn end
        -- Never blocks: a worker busy sending its results must not wait
        -- for a parent that waits to send it more work.
        local ok, err = pcall(w.conn.send_nowait, w.conn, msg)
        if ok then
          w.fids[fid] = true
          w.jobs[#w.jobs + 1] = job
          self._rr = slot
          progress = true
        elseif concur.is(err, "Unsendable") then
          self:_finish(job, false, err)
          progress = true
        else
          dq_push_front(self._pending, job) -- the worker is gone: it is found below
          w.gone = true
        end
      end
    end
  end
end

-- A worker's pipe said EOF: it ended (maxtasksperchild) or died.
function Pool:_lost(slot)
  local w = self._workers[slot]
  w.conn:close()
  w.proc:join(5)
  if w.jobs[1] then
    -- The task it was running is lost; those it had not begun go elsewhere.
    local code = w.proc.exitcode
    self:_finish(w.jobs[1], false, new_error("WorkerLost",
      ("the worker (pid %d) running this task died (exit code %s)"):format(w.pid, tostring(code))))
    for i = #w.jobs, 2, -1 do dq_push_front(self._pending, w.jobs[i]) end
  end
  self._workers[slot] = nil
  if self._state ~= "terminated" and (self._state == "running" or self._outstanding > 0) then
    self:_spawn(slot)
  end
end

-- Handles what the workers sent within timeout seconds (nil: until something
-- comes). Returns true when something was handled.
function Pool:_pump(timeout)
  self:_dispatch()
  local conns, slots = {}, {}
  for slot = 1, self._n do
    local w = self._workers[slot]
    if w then
      conns[#conns + 1] = w.conn
      slots[w.conn] = slot
    end
  end
  if #conns == 0 then return false end
  local ready = concur.wait(conns, timeout)
  for _, c in ipairs(ready) do
    local slot = slots[c]
    local w = self._workers[slot]
    local ok, reply = pcall(c.recv, c)
    if ok then
      local job = table.remove(w.jobs, 1)
      w.retiring = reply.last
      if reply.last then
        -- It ends after this reply: what it had not begun goes elsewhere.
        for i = #w.jobs, 1, -1 do dq_push_front(self._pending, w.jobs[i]) end
        w.jobs = {}
      end
      if job and reply.id == job.id then
        if reply.ok then
          self:_finish(job, true, reply.values)
        else
          self:_finish(job, false, new_error("RemoteError",
            ("a pool task failed in worker %d: %s"):format(reply.pid, reply.err.msg),
            {remote_traceback = reply.err.tb}))
        end
      end
    elseif concur.is(reply, "EOF") or concur.is(reply, "OSError") then
      self:_lost(slot)
    else
      error(reply, 0)
    end
  end
  self:_dispatch()
  return #ready > 0
end

-- Scaled timeouts: the pool waits in real seconds like every concur call.
local function deadline(timeout)
  return timeout and concur.time() + timeout * concur.time_scale or nil
end

local function remaining(dl)
  if not dl then return nil end
  return math.max(0, (dl - concur.time()) / concur.time_scale)
end

local function new_result(pool, callback, error_callback, single)
  local r = setmetatable({_pool = pool, _ready = false}, AsyncResult)
  local function done(ok, value)
    r._ready, r._ok = true, ok
    if ok then
      r._value = single and value[1] or value
      if callback then
        local good, err = pcall(callback, r._value)
        if not good then io.stderr:write("concur: error in a pool callback: ", tostring(err), "\n") end
      end
    else
      r._error = value
      if error_callback then
        local good, err = pcall(error_callback, value)
        if not good then io.stderr:write("concur: error in a pool error_callback: ", tostring(err), "\n") end
      end
    end
  end
  return r, done
end

function AsyncResult:ready()
  if not self._ready then self._pool:_pump(0) end
  return self._ready
end

function AsyncResult:wait(timeout)
  local dl = deadline(timeout)
  while not self._ready do
    local left = remaining(dl)
    if left == 0 then break end
    self._pool:_pump(left)
  end
  return self._ready
end

function AsyncResult:get(timeout)
  if not self:wait(timeout) then
    concur.error("Timeout", ("the result was not ready after %g s"):format(timeout))
  end
  if not self._ok then error(self._error, 2) end
  return self._value
end

function AsyncResult:successful()
  if not self:ready() then concur.error("ValueError", "the result is not ready yet") end
  return self._ok
end

AsyncResult.__tostring = function(r)
  return ("AsyncResult(%s)"):format(not r._ready and "pending" or r._ok and "ready" or "failed")
end

local function pack_args(args)
  if args == nil then return {n = 0} end
  if type(args) ~= "table" then concur.error("ValueError", "args must be a table") end
  args.n = args.n or #args
  return args
end

function Pool:apply_async(fn, args, opts)
  self:_check()
  opts = opts or {}
  local r, done = new_result(self, opts.callback, opts.error_callback, true)
  self:_submit(fn, {pack_args(args)}, done)
  return r
end

function Pool:apply(fn, args)
  return self:apply_async(fn, args):get()
end

-- The list cut into tasks of `size` calls: argument lists for starmap, the
-- items themselves for map (one table less per item to send).
local function chunks(list, size, star)
  local out, n = {}, #list
  for first = 1, n, size do
    local last = math.min(n, first + size - 1)
    local cur
    if star then
      cur = {count = last - first + 1}
      for i = first, last do cur[i - first + 1] = pack_args(list[i]) end
    else
      cur = {items = table.move(list, first, last, 1, {}), count = last - first + 1}
    end
    out[#out + 1] = cur
  end
  return out
end

local function default_chunksize(self, n)
  local c = n // (self._n * 4)
  if n % (self._n * 4) ~= 0 then c = c + 1 end
  return math.max(1, c)
end

function Pool:_map_async(fn, list, chunksize, star, opts)
  self:_check()
  if type(list) ~= "table" then concur.error("ValueError", "map takes a list") end
  chunksize = chunksize or default_chunksize(self, #list)
  if math.type(chunksize) ~= "integer" or chunksize < 1 then
    concur.error("ValueError", "chunksize must be a whole number of at least 1")
  end
  opts = opts or {}
  local r, done = new_result(self, opts.callback, opts.error_callback, false)
  local parts = chunks(list, chunksize, star)
  local results, left, failed = {}, #parts, false
  if left == 0 then
    done(true, {})
    return r
  end
  local base = 0
  for _, part in ipairs(parts) do
    local offset = base
    base = base + part.count
    self:_submit(fn, part, function(ok, values)
      if failed then return end
      if not ok then
        failed = true
        done(false, values)
        return
      end
      table.move(values, 1, part.count, offset + 1, results)
      left = left - 1
      if left == 0 then done(true, results) end
    end)
  end
  return r
end

function Pool:map_async(fn, list, chunksize, opts) return self:_map_async(fn, list, chunksize, false, opts) end
function Pool:map(fn, list, chunksize) return self:_map_async(fn, list, chunksize, false):get() end
function Pool:starmap_async(fn, list, chunksize, opts) return self:_map_async(fn, list, chunksize, true, opts) end
function Pool:starmap(fn, list, chunksize) return self:_map_async(fn, list, chunksize, true):get() end

-- imap and imap_unordered: iterators of index, value; lazy, so the first
-- result comes as soon as it is ready.
function Pool:_imap(fn, list, chunksize, ordered)
  self:_check()
  chunksize = chunksize or 1
  local arrived, order, next_i, total = {}, {}, 1, #list
  local err
  local base = 0
  for _, part in ipairs(chunks(list, chunksize, false)) do
    local offset = base
    base = base + part.count
    self:_submit(fn, part, function(ok, values)
      if not ok then err = err or values return end
      for i = 1, part.count do
        arrived[offset + i] = {values[i]}
        order[#order + 1] = offset + i
      end
    end)
  end
  local taken = 0
  return function()
    while true do
      if err then error(err, 2) end
      if ordered then
        if next_i > total then return nil end
        local got = arrived[next_i]
        if got then
          arrived[next_i] = nil
          next_i = next_i + 1
          return next_i - 1, got[1]
        end
      else
        if taken >= total then return nil end
        if #order > 0 then
          local i = table.remove(order, 1)
          local got = arrived[i]
          arrived[i] = nil
          taken = taken + 1
          return i, got[1]
        end
      end
      self:_pump(nil)
    end
  end
end

function Pool:imap(fn, list, chunksize) return self:_imap(fn, list, chunksize, true) end
function Pool:imap_unordered(fn, list, chunksize) return self:_imap(fn, list, chunksize, false) end

function Pool:close()
  if self._state == "running" then self._state = "closed" end
end

-- join(): after close, waits for every task (running the callbacks), then
-- for the workers to end.
function Pool:join()
  if self._state == "running" then
    concur.error("ValueError", "the pool is still running: close() or terminate() it before join()")
  end
  while self._outstanding > 0 and self._state ~= "terminated" do self:_pump(nil) end
  for slot, w in pairs(self._workers) do
    pcall(w.conn.send, w.conn, nil)
  end
  for slot, w in pairs(self._workers) do
    w.proc:join()
    w.conn:close()
    self._workers[slot] = nil
  end
end

function Pool:terminate()
  if self._state == "terminated" then return end
  self._state = "terminated"
  for _, w in pairs(self._workers) do w.proc:terminate() end
  for slot, w in pairs(self._workers) do
    w.proc:join()
    w.conn:close()
    self._workers[slot] = nil
  end
  for _, job in pairs(self._jobs) do
    self:_finish(job, false, new_error("ProcessError", "the pool was terminated before this task ended"))
  end
  self._pending = deque()
end

function Pool:workers()
  local pids = {}
  for slot = 1, self._n do
    if self._workers[slot] then pids[#pids + 1] = self._workers[slot].pid end
  end
  return pids
end

Pool.__close = function(p) if p._creator == concur.getpid() then p:terminate() end end
Pool.__gc = Pool.__close
Pool.__tostring = function(p)
  return ("Pool(%d processes, %s, %d tasks outstanding)"):format(p._n, p._state, p._outstanding)
end

return Pool
