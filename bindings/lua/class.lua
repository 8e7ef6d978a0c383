-- class - concur.class(name, methods): a Lua class whose instances travel by its name.
-- Embedded in the module; called with it and the private table.
--
-- A table with a metatable does not travel as itself: its fields would
-- arrive without its class. A class made here can: its instances go as
-- their class's name and their fields (a plain table, through the codec
-- as any table: arena objects by handle, functions by bytecode), and the
-- receiver sets the class it has under that name back on them. Every
-- process forked after the class was made has it; one forked before must
-- make it too, or its receive fails with an error that names the class.
-- The class itself travels by its name too. Making a class of a name that
-- is made already replaces it in this process: what arrives after is of
-- the new one.
local concur, P = ...
local E = P.E
local types = P.codec_types

-- The classes by name, for a class that travels itself (an upvalue of a
-- function sent to a Pool, say).
local classes = {}
types["concur.classes"] = function(name)
  local C = classes[name]
  if not C then
    P.raise(E.VALUE, ("a message holds the class '%s', which this process has not made: make "
      .. "it (concur.class) before this process starts, or in it before it receives one")
      :format(name))
  end
  return C
end

-- Fields as they travel: a plain copy, without the metatable (nor its
-- __pairs).
local function fields_of(self)
  local t = {}
  for k, v in next, self do t[k] = v end
  return t
end

local function make(name, methods, internal)
  if type(name) ~= "string" or name == "" then
    P.raise(E.VALUE, "concur.class takes a name (a string) and a table of methods")
  end
  if not internal and name:sub(1, 7) == "concur." then
    P.raise(E.VALUE, ("the class names concur.* are concur's own; call it something else than '%s'")
      :format(name))
  end
  if methods ~= nil and type(methods) ~= "table" then
    P.raise(E.VALUE, ("the methods of class '%s' must be a table, not %s"):format(name, type(methods)))
  end
  local C = {}
  for k, v in pairs(methods or {}) do C[k] = v end
  C.__name = name
  if C.__index == nil then C.__index = C end
  -- __state(self) -> what travels (a plain table of its fields unless
  -- said otherwise); __from_state(state) -> the instance it makes.
  -- Without them, the receiver makes the instance from its fields and the
  -- class (the codec does, so that an instance that refers to itself
  -- arrives so); with them, __from_state is given the state.
  local state = C.__state or fields_of
  local from_state = C.__from_state
  if C.__state and not from_state then
    -- The state is the fields to make it of.
    from_state = function(s) return setmetatable(s, C) end
    C.__concur_encode = function(self)
      local s = state(self)
      if type(s) ~= "table" then
        P.raise(E.VALUE, ("__state of class '%s' returned a %s: without __from_state it must "
          .. "return a table of the fields to make the instance of"):format(name, type(s)))
      end
      return name, s
    end
  else
    C.__concur_encode = function(self) return name, state(self) end
  end
  types[name] = from_state or C
  classes[name] = C
  -- C(...) makes an instance: init(self, ...) fills it, if the class has one.
  return setmetatable(C, {
    __call = function(cls, ...)
      local o = setmetatable({}, cls)
      if cls.init then cls.init(o, ...) end
      return o
    end,
    __tostring = function() return "concur.class " .. name end,
    __concur_encode = function() return "concur.classes", name end,
  })
end

-- concur's own classes (the Manager's proxies) may take concur.* names.
P.class = function(name, methods) return make(name, methods, true) end

return function(name, methods) return make(name, methods, false) end
