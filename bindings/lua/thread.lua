-- thread - concur.Thread and friends, on the handles of lthread.c. Embedded
-- in the module; called with it.
local concur, P = ...
local E = P.E

-- Threads: this state is the process's, shared by its threads; each change
-- is one C call that does not wait, or one table store, which no switch of
-- the GIL can split (a switch happens between instructions, or in a call
-- that waits).
local Thread = {}
Thread.__name = "concur.Thread"
local by_handle = setmetatable({}, {__mode = "k"})
local main

local function class_index(cls)
  return function(self, k)
    if k == "ident" then
      local h = rawget(self, "_handle")
      if h then return h:ident() end
      -- The main thread's is its process's pid, in a child too.
      return rawget(self, "_main") and concur.getpid() or nil
    end
    return cls[k]
  end
end

local FIELDS = {"target", "args", "name", "daemon"}

local function construct(cls, t)
  if t ~= nil and type(t) ~= "table" then
    P.raise(E.VALUE, "Thread takes a table of fields: Thread{target = f, args = {...}}")
  end
  -- The base class takes its own fields only (a subclass's instances may
  -- take any: its run() reads them).
  if t and rawget(cls, "__base") then P.check_fields(t, "Thread", 1, FIELDS) end
  local self = setmetatable({}, cls.__instance)
  for k, v in pairs(t or {}) do self[k] = v end
  if self.target ~= nil and type(self.target) ~= "function" and not (getmetatable(self.target) or {}).__call then
    P.raise(E.VALUE, "target must be a function")
  end
  if self.args ~= nil and type(self.args) ~= "table" then
    P.raise(E.VALUE, "args must be a table")
  end
  if self.daemon ~= nil and type(self.daemon) ~= "boolean" then
    P.raise(E.VALUE, "daemon must be a boolean")
  end
  if self.name ~= nil and type(self.name) ~= "string" then
    P.raise(E.VALUE, "name must be a string")
  end
  if self.name == nil then
    self.name = "Thread-" .. P.thread_number()
  end
  if self.daemon == nil then self.daemon = concur.current_thread().daemon end
  return self
end

local function make_class(parent)
  local cls = setmetatable({}, {__index = parent, __call = construct})
  cls.__instance = {__index = class_index(cls), __name = "concur.Thread",
                    __tostring = function(t) return cls.__tostring_of(t) end,
                    __waitable = function(t) return cls.__waitable_of(t) end}
  return cls
end

function Thread:extend() return make_class(self) end

function Thread:run()
  if self.target then self.target(table.unpack(self.args or {}, 1, (self.args or {}).n)) end
end

function Thread:start()
  if rawget(self, "_handle") or self == main then
    P.raise(E.VALUE, "threads can only be started once")
  end
  -- The new thread may run before _thread_start's caller runs again (a
  -- switch of the GIL right after it returns): it registers itself first,
  -- or current_thread() would be the main thread's there (a Pool's leader
  -- would be taken for another's, and its waits for nobody's).
  local function run()
    local h = P.thread_current()
    rawset(self, "_handle", h)
    by_handle[h] = self
    self:run()
  end
  local h = P.thread_start(run, self.name, self.daemon and true or false)
  rawset(self, "_handle", h)
  by_handle[h] = self
  return self
end

function Thread:join(timeout)
  if self == concur.current_thread() then
    P.raise(E.VALUE, "a thread cannot join itself (it would wait for its own end)")
  end
  if self == main then
    P.raise(E.VALUE, "the main thread cannot be joined: it ends when its process does")
  end
  local h = rawget(self, "_handle")
  if not h then P.raise(E.VALUE, "cannot join a thread before it is started") end
  return h:join(timeout)
end

function Thread:is_alive()
  if self == main then return true end
  local h = rawget(self, "_handle")
  return h ~= nil and h:is_alive()
end

-- What concur.wait waits on for a Thread: its handle.
function Thread.__waitable_of(t)
  local h = rawget(t, "_handle")
  if not h then
    P.raise(E.VALUE, rawget(t, "_main") and "cannot wait for the main thread to end"
                     or "can only wait for a started thread")
  end
  return h
end

function Thread.__tostring_of(t)
  local state = t == main and "started" or (rawget(t, "_handle") and (t:is_alive() and "started" or "stopped") or "initial")
  return ("<Thread(%s, %s%s)>"):format(t.name, state, t.daemon and " daemon" or "")
end

local Base = make_class(nil)
for k, v in pairs(Thread) do Base[k] = v end
rawset(Base, "__base", true)
Base.__instance.__index = class_index(Base)

function concur.main_thread()
  if not main then
    main = setmetatable({name = "MainThread", daemon = false, _main = true}, Base.__instance)
  end
  return main
end

function concur.current_thread()
  local h = P.thread_current()
  if not h then return concur.main_thread() end
  return by_handle[h] or concur.main_thread()
end

function concur.enumerate()
  local list = {concur.main_thread()}
  for _, h in ipairs(P.threads()) do
    if by_handle[h] then list[#list + 1] = by_handle[h] end
  end
  return list
end

function concur.active_count() return #concur.enumerate() end

return Base
