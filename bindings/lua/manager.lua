-- manager - concur.Manager: shared containers, and registered classes served
-- by a process of their own. Embedded in the module; called with it.
local concur, P = ...
local E = P.E

local Manager = {}
Manager.__index = Manager
Manager.__name = "concur.Manager"
Manager._types = {}

-- Threads: `replies` has an entry per thread, which only that thread uses
-- (stores into it are single table stores, which a GIL switch cannot split).
-- The reply queue of the calling thread: one per thread of each process
-- (a child makes its own), so that no thread takes another's reply; each
-- request is numbered, and a reply to an earlier one that was given up
-- (interrupted) is dropped when it comes.
local replies = setmetatable({}, {__mode = "k"})
local function reply_queue()
  local me, pid = concur.current_thread(), concur.getpid()
  local r = replies[me]
  if not r or r.pid ~= pid then
    r = {pid = pid, q = concur.SimpleQueue(), last = 0}
    replies[me] = r
  end
  return r
end

-- concur's error objects share one metatable; take it from one of them.
local ERROR_MT = getmetatable(select(2, pcall(P.raise, E.REMOTE, "")))

local function remote_error(err, what)
  return setmetatable({kind = P.kind(E.REMOTE),
                       message = ("%s failed in the manager's process: %s"):format(what, err.msg),
                       remote_traceback = err.tb, traceback = debug.traceback("", 3)}, ERROR_MT)
end

-- Sends a request to a server and waits for its answer, looking now and
-- then whether the server is still there.
local function request(server, req, what)
  if not P.pid_alive(server.pid) then
    P.raise(E.PROC, ("the manager's process (pid %d) is gone: it was shut down or died; %s cannot run")
      :format(server.pid, what))
  end
  local r = reply_queue()
  local q = r.q
  r.last = r.last + 1
  req.reply, req.seq = q, r.last
  server.requests:put(req)
  while true do
    local ok, rep = pcall(q.get, q, true, 0.5 / concur.time_scale)
    if ok and rep.seq == req.seq then
      if not rep.ok then error(remote_error(rep.err, what), 2) end
      return rep.r
    end
    if not ok and not concur.is(rep, P.kind(E.EMPTY)) then error(rep, 0) end
    if not P.pid_alive(server.pid) then
      P.raise(E.PROC, ("the manager's process (pid %d) died during %s"):format(server.pid, what))
    end
  end
end

-- Proxies: method calls on an object that lives in the server. A proxy
-- travels (a concur class) as the server's address and the object's id.
local Proxy

local function proxy(server, id, typename)
  return setmetatable({_server = server, _id = id, _type = typename}, Proxy)
end

local proxy_methods = {}

proxy_methods.__index = function(p, name)
  if type(name) ~= "string" or name:sub(1, 1) == "_" then return nil end
  local method = function(self, ...)
    if self ~= p then P.raise(E.VALUE, ("call %s:%s(...) with a colon"):format(p._type, name)) end
    local r = request(p._server, {op = "call", id = p._id, method = name,
                                  args = table.pack(...)}, ("%s:%s()"):format(p._type, name))
    return table.unpack(r, 1, r.n)
  end
  rawset(p, name, method)
  return method
end

proxy_methods.__tostring = function(p)
  return ("Proxy(%s, id=%d, server pid %d)"):format(p._type, p._id, p._server.pid)
end

proxy_methods.__state = function(p)
  return {requests = p._server.requests, pid = p._server.pid, id = p._id, type = p._type}
end

proxy_methods.__from_state = function(state)
  return proxy({requests = state.requests, pid = state.pid}, state.id, state.type)
end

Proxy = P.class("concur.Proxy", proxy_methods)

-- The server: runs the registered constructors and methods.
local function serve(requests, types)
  local objects, next_id = {}, 0
  local function fail(e)
    return {msg = tostring(e), tb = debug.traceback(tostring(e), 2)}
  end
  while true do
    local req = requests:get()
    local ok, res
    if req.op == "stop" then
      req.reply:put({ok = true, seq = req.seq})
      return
    elseif req.op == "create" then
      local ctor = types[req.type]
      ok, res = xpcall(ctor, fail, table.unpack(req.args, 1, req.args.n))
      if ok then
        next_id = next_id + 1
        objects[next_id] = res
        res = next_id
      end
    elseif req.op == "call" then
      local obj = objects[req.id]
      local fn = obj and obj[req.method]
      if type(fn) ~= "function" then
        ok, res = false, {msg = ("the object has no method '%s'"):format(req.method), tb = ""}
      else
        ok, res = xpcall(function() return table.pack(fn(obj, table.unpack(req.args, 1, req.args.n))) end, fail)
      end
    end
    local sent, err = pcall(req.reply.put, req.reply, ok and {ok = true, r = res, seq = req.seq}
                                                        or {ok = false, err = res, seq = req.seq})
    if not sent then
      req.reply:put({ok = false, seq = req.seq,
                     err = {msg = "the result cannot be sent back: " .. tostring(err), tb = ""}})
    end
  end
end

local function check(m, what)
  if getmetatable(m) == nil or m._closed == nil then
    P.raise(E.VALUE, ("call m:%s(...) with a colon, on a Manager"):format(what or "method"))
  end
  if m._closed then
    P.raise(E.PROC, "the manager is shut down; make a new one")
  end
end

-- Manager(): a manager; with registered classes it starts their server.
local function construct(cls, opts)
  if opts ~= nil then
    if type(opts) ~= "table" then P.raise(E.VALUE, "Manager() takes no arguments") end
    P.check_fields(opts, "Manager", 1, {})
  end
  local m = setmetatable({_creator = concur.getpid(), _closed = false}, cls)
  local types = cls:_all_types()
  if next(types) ~= nil then
    local requests = concur.Queue()
    local p = concur.Process{target = serve, args = {requests, types}, daemon = true,
                             name = "ManagerServer"}
    p:start()
    m._process = p
    m._server = {requests = requests, pid = p.pid}
  end
  return m
end

function Manager:_all_types()
  local all, cls = {}, self
  while cls do
    for k, v in pairs(rawget(cls, "_types") or {}) do
      if all[k] == nil then all[k] = v end
    end
    local mt = getmetatable(cls)
    cls = mt and mt.__index ~= cls and type(mt.__index) == "table" and mt.__index or nil
  end
  return all
end

setmetatable(Manager, {__call = construct})

-- Manager:extend(): a subclass; M.register("Name", ctor) gives it m:Name(...).
function Manager:extend()
  local cls = {}
  for k, v in pairs(self) do
    if k:sub(1, 2) == "__" then cls[k] = v end
  end
  cls.__index = cls
  cls._types = {}
  cls.register = function(name, ctor)
    if type(name) ~= "string" then
      P.raise(E.VALUE, "register takes a name and a constructor: M.register(\"Name\", Class)")
    end
    if type(ctor) ~= "function" and not (getmetatable(ctor) or {}).__call then
      P.raise(E.VALUE, ("the constructor of '%s' must be callable"):format(name))
    end
    cls._types[name] = ctor
    cls[name] = function(m, ...)
      check(m, name)
      if not m._server then
        P.raise(E.PROC, ("'%s' was registered after this manager was made; register before making it"):format(name))
      end
      local id = request(m._server, {op = "create", type = name, args = table.pack(...)},
                         ("%s(...)"):format(name))
      return proxy(m._server, id, name)
    end
  end
  return setmetatable(cls, {__index = self, __call = construct})
end

-- The containers and every primitive (each type of the one list whose
-- constructor the module has), made by the manager as in CPython.
local factories = {dict = P.Dict, list = P.List, Namespace = P.Namespace}
for _, name in ipairs(P.type_names()) do
  if concur[name] then factories[name] = concur[name] end
end
-- A bad argument is said as the user's m:name(...) call's, at its line.
for name, make in pairs(factories) do
  Manager[name] = function(m, ...)
    check(m, name)
    local r = table.pack(pcall(make, ...))
    if r[1] then return table.unpack(r, 2, r.n) end
    local e = r[2]
    if type(e) ~= "string" then error(e, 0) end
    e = e:gsub("^[^\n]-:%d+: ", ""):gsub("to '[^']*'", "to '" .. name .. "'", 1)
    error(e, 2)
  end
end

-- shutdown(): stops the server (its objects are gone); later calls fail.
function Manager:shutdown()
  if self._closed then return end
  self._closed = true
  if self._process and self._creator == concur.getpid() then
    local ok = pcall(request, self._server, {op = "stop"}, "shutdown")
    if not ok or not self._process:join(5) then
      self._process:kill()
      self._process:join()
    end
  end
end

Manager.__close = Manager.shutdown
Manager.__gc = function(m)
  if m._creator == concur.getpid() then pcall(Manager.shutdown, m) end
end
Manager.__tostring = function(m)
  return ("Manager(%s%s)"):format(m._closed and "shut down" or "running",
    m._server and (", server pid " .. m._server.pid) or "")
end

return Manager
