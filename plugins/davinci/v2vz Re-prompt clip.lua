--[[
v2vz Re-prompt clip: the DaVinci Resolve menu script in Lua (Workspace > Scripts > Edit > v2vz Re-prompt clip).

Since Resolve 21.1 the free edition runs only Lua scripts (LuaJIT, Lua 5.1) and has no dialogs, so this script does
what the Python script (v2vz_resolve.py) does without one: for the selected clips (or the video clip under the
playhead) it reads the prompts from the clip's marker named `v2vz` (docs/markers.md: the same grammar, the same
mistakes), runs the installed `v2vz` command (`v2vz edit|final|attach ... --events jsonl`, docs/events.md) and places
the edited frames over the clip exactly as the Python script does: the first edit on a new video track named `v2vz`
at the clip's record frame, later ones as takes of that item (a Resolve without takes, or refusing one: a new track),
a preview placed at once and replaced by its final, a `v2vz job` marker for a re-attach, the clip's colour for the
state. Messages go to Workspace > Console.

The client: $V2VZ_CLIENT, else line 1 of the `v2vz-client.txt` that `v2vz plugin install resolve` writes beside this
script, else $VIRTUAL_ENV's, else `v2vz` on the PATH. Loaded with the global V2VZ_NO_MAIN set, the script only
returns its functions (tests/plugins/lua/ drives it that way).
]]

local LAUNCHER_VERSION = 1 -- `v2vz plugin install resolve` compares it with the package's copy

local M = { LAUNCHER_VERSION = LAUNCHER_VERSION }
local unpack = unpack or table.unpack -- luacheck: ignore (Lua 5.1 / 5.2+)

local PROMPT_MARKER = "v2vz"
local JOB_MARKER = "v2vz job"
local JOB_MARKER_COLOR = "Yellow"
local BIN_NAME = "v2vz"
local TRACK_NAME = "v2vz"
local CLIENT_FILE = "v2vz-client.txt"
local STATE_FILE = "v2vz-state.json"
local CLIENT_RECORD = "v2vz.json" -- the client's record of a job in its PNG folder (what `v2vz final` reads)
local FRAME_PATTERN = "frame_%06d.png"
local MASK_PATTERN = "mask_%06d.png"
local MASK_SUFFIX = "-mask"
local MATTE_ABOVE = "above"
local LABEL_LENGTH = 60
-- Resolve's clip colours (it has no red): running, done, done with a placement to check, failed.
local COLOR_RUNNING, COLOR_DONE, COLOR_CHECK, COLOR_FAILED = "Orange", "Green", "Yellow", "Pink"
local KIND_EDIT, KIND_PREVIEW, KIND_FINAL = "edit", "preview", "final"
local REFUSED_TYPES = { "compound", "generator", "title", "timeline", "fusion", "multicam", "adjustment" }
local JOB_DATA_KEYS = { "job", "dir", "kind", "prompt", "preview_job", "preview_dir", "mask_dir" }
local SCRIPT_MENU = "Workspace > Scripts > Edit > v2vz Re-prompt clip"
local STATUS_MARK = "__v2vz_client_exit_status__" -- the shell's last line: the client's exit status
local WINDOWS = package.config:sub(1, 1) == "\\"

-- Where the console lines go; tests replace it to collect them.
M.output = function(line)
  print(line)
  if io.stdout then io.stdout:flush() end
end
-- Overrides for tests (nil: the environment decides).
M.config = { output_dir = nil }

local function say(message)
  M.output("v2vz: " .. message)
end

-- A refusal (a clip or request this script will not edit) travels as an error table, caught per clip.
local function refuse(message)
  error({ refused = message }, 0)
end

-- ---------------------------------------------------------------------------------------------------------------
-- Small helpers

local BLANK_CLASS = "[ \t]"

local function strip(text)
  return (text:gsub("^[ \t]+", ""):gsub("[ \t]+$", ""))
end

local function split_whitespace(text)
  local words = {}
  for word in text:gmatch("%S+") do words[#words + 1] = word end
  return words
end

-- A table that the JSON writer writes as an array even when it is empty.
local ARRAY = {}
local function array(t)
  return setmetatable(t or {}, ARRAY)
end
M.array = array

local function contains(list, value)
  for _, entry in ipairs(list) do
    if entry == value then return true end
  end
  return false
end

-- Python's repr() of a float: the shortest text that reads back as the same number ("0.4", "1.0", "1e-05").
local function float_repr(x)
  local text
  for precision = 1, 17 do
    text = string.format("%." .. precision .. "g", x)
    if tonumber(text) == x then break end
  end
  if not text:find("[%.eEn]") then text = text .. ".0" end
  return text
end
M.float_repr = float_repr

-- The characters of a UTF-8 string up to `count` of them (a prompt is cut between characters, never inside one).
local function utf8_head(text, count)
  local seen, index = 0, 1
  while index <= #text do
    local byte = text:byte(index)
    if byte < 0x80 or byte >= 0xC0 then
      seen = seen + 1
      if seen > count then return text:sub(1, index - 1) end
    end
    index = index + 1
  end
  return text
end

local function utf8_length(text)
  local _, count = text:gsub("[^\128-\191]", "")
  return count
end

-- Every value of a table Resolve returned, in key order: lists come as 1-based arrays, some as keyed tables.
local function values_of(t)
  if type(t) ~= "table" then return {} end
  local keys = {}
  for key in pairs(t) do keys[#keys + 1] = key end
  table.sort(keys, function(a, b)
    local na, nb = tonumber(a), tonumber(b)
    if na and nb then return na < nb end
    return tostring(a) < tostring(b)
  end)
  local out = {}
  for _, key in ipairs(keys) do out[#out + 1] = t[key] end
  return out
end

-- Call a method that an older Resolve may not have: nil when it is absent or fails (never an error), so the
-- script works whether a missing name is nil or a callable that returns nil.
local function call(object, name, ...)
  if object == nil then return nil end
  local found, method = pcall(function() return object[name] end)
  if not found or method == nil then return nil end
  local results = { pcall(method, object, ...) }
  if not results[1] then return nil end
  return unpack(results, 2, table.maxn(results))
end

local function int(value)
  local number = tonumber(value)
  if number == nil then return 0 end
  return number >= 0 and math.floor(number + 0.5) or -math.floor(-number + 0.5)
end

-- ---------------------------------------------------------------------------------------------------------------
-- JSON: the client's event lines, the job markers' customData and the state files

local json = {}

local ESCAPES = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f", ["\n"] = "\\n", ["\r"] = "\\r",
  ["\t"] = "\\t" }

local function encode_string(text)
  return '"' .. text:gsub('[%c"\\]', function(char)
    return ESCAPES[char] or string.format("\\u%04x", char:byte())
  end) .. '"'
end

function json.encode(value)
  local kind = type(value)
  if kind == "nil" then return "null" end
  if kind == "boolean" then return tostring(value) end
  if kind == "number" then
    if value ~= value or value == math.huge or value == -math.huge then return "null" end
    if value == math.floor(value) and math.abs(value) < 2 ^ 53 then return string.format("%d", value) end
    return string.format("%.17g", value)
  end
  if kind == "string" then return encode_string(value) end
  if kind ~= "table" then return encode_string(tostring(value)) end
  if getmetatable(value) == ARRAY or #value > 0 then
    local parts = {}
    for index = 1, #value do parts[index] = json.encode(value[index]) end
    return "[" .. table.concat(parts, ",") .. "]"
  end
  local keys = {}
  for key in pairs(value) do keys[#keys + 1] = tostring(key) end
  table.sort(keys)
  local parts = {}
  for _, key in ipairs(keys) do
    parts[#parts + 1] = encode_string(key) .. ":" .. json.encode(value[key])
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

local function utf8_char(code)
  if code < 0x80 then return string.char(code) end
  if code < 0x800 then return string.char(0xC0 + math.floor(code / 0x40), 0x80 + code % 0x40) end
  if code < 0x10000 then
    return string.char(0xE0 + math.floor(code / 0x1000), 0x80 + math.floor(code / 0x40) % 0x40, 0x80 + code % 0x40)
  end
  return string.char(0xF0 + math.floor(code / 0x40000), 0x80 + math.floor(code / 0x1000) % 0x40,
    0x80 + math.floor(code / 0x40) % 0x40, 0x80 + code % 0x40)
end

-- Decoding raises a plain string error; json.decode returns nil for text that is not one JSON value.
local function skip_space(text, at)
  return text:find("[^ \t\r\n]", at) or #text + 1
end

local decode_value

local function decode_string(text, at)
  local parts, index = {}, at + 1
  while true do
    local char = text:sub(index, index)
    if char == "" then error("unterminated string") end
    if char == '"' then return table.concat(parts), index + 1 end
    if char == "\\" then
      local escape = text:sub(index + 1, index + 1)
      local simple = ({ ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t" })[escape]
      if simple then
        parts[#parts + 1], index = simple, index + 2
      elseif escape == "u" then
        local code = tonumber(text:sub(index + 2, index + 5):match("^%x%x%x%x$") or "", 16)
        if not code then error("bad \\u escape") end
        index = index + 6
        local low = text:sub(index, index + 5):match("^\\u(%x%x%x%x)$")
        if code >= 0xD800 and code < 0xDC00 and low and tonumber(low, 16) >= 0xDC00 and tonumber(low, 16) < 0xE000 then
          code = 0x10000 + (code - 0xD800) * 0x400 + (tonumber(low, 16) - 0xDC00)
          index = index + 6
        end
        parts[#parts + 1] = utf8_char(code)
      else
        error("bad escape")
      end
    else
      local run_end = text:find('["\\]', index) or #text + 1
      parts[#parts + 1] = text:sub(index, run_end - 1)
      index = run_end
    end
  end
end

decode_value = function(text, at)
  at = skip_space(text, at)
  local char = text:sub(at, at)
  if char == "{" then
    local object = {}
    at = skip_space(text, at + 1)
    if text:sub(at, at) == "}" then return object, at + 1 end
    while true do
      if text:sub(at, at) ~= '"' then error("expected a key") end
      local key
      key, at = decode_string(text, at)
      at = skip_space(text, at)
      if text:sub(at, at) ~= ":" then error("expected ':'") end
      object[key], at = decode_value(text, at + 1)
      at = skip_space(text, at)
      local after = text:sub(at, at)
      if after == "}" then return object, at + 1 end
      if after ~= "," then error("expected ',' or '}'") end
      at = skip_space(text, at + 1)
    end
  elseif char == "[" then
    local list = array()
    at = skip_space(text, at + 1)
    if text:sub(at, at) == "]" then return list, at + 1 end
    while true do
      list[#list + 1], at = decode_value(text, at)
      at = skip_space(text, at)
      local after = text:sub(at, at)
      if after == "]" then return list, at + 1 end
      if after ~= "," then error("expected ',' or ']'") end
      at = at + 1
    end
  elseif char == '"' then
    return decode_string(text, at)
  elseif text:sub(at, at + 3) == "true" then
    return true, at + 4
  elseif text:sub(at, at + 4) == "false" then
    return false, at + 5
  elseif text:sub(at, at + 3) == "null" then
    return json.null, at + 4
  end
  local number = text:match("^-?%d+%.?%d*[eE]?[-+]?%d*", at)
  if number and tonumber(number) then return tonumber(number), at + #number end
  error("unexpected character at " .. at)
end

json.null = nil -- JSON null reads as nil: a missing field and a null one are alike to this script

function json.decode(text)
  local ok, value, at = pcall(decode_value, text, 1)
  if not ok or skip_space(text, at) <= #text then return nil end
  return value
end
M.json = json

-- The JSON object on one line of the client's stdout, or nil for anything else (docs/events.md: skip it).
local function parse_line(line)
  local value = json.decode(line)
  if type(value) == "table" and getmetatable(value) ~= ARRAY then return value end
  return nil
end
M.parse_line = parse_line

-- ---------------------------------------------------------------------------------------------------------------
-- The marker grammar (docs/markers.md), as parse_marker in plugins/host/v2vz_host.py reads it

local MARKER_KEYS = { "source", "prompt", "options", "preview", "edit only", "matte", "self replace", "show mask",
  "model", "lora", "method" }
local METHODS = { "vid2vid-zero", "flowedit" } -- `method:` ("": the client's default)
local YES = { "yes", "y", "true", "on", "1" }
local NO = { "no", "n", "false", "off", "0", "" }
local SEPARATORS = { [";"] = true, ["|"] = true }
-- `options:` may hold these `v2vz edit` options (true: it takes a value), in the order the docs list them.
local OPTION_NAMES = { "--preset", "--steps", "--guidance", "--seed", "--size", "--inversion", "--fast", "--attention",
  "--null-steps", "--window", "--anchors", "--window-links", "--edit-only-threshold", "--matte-feather", "--edit-only",
  "--self-replace", "--matte", "--matte-start", "--lora", "--method", "--n-max", "--n-min", "--n-avg",
  "--source-guidance" }
local OPTION_TAKES_VALUE = {}
for _, name in ipairs(OPTION_NAMES) do OPTION_TAKES_VALUE[name] = name ~= "--fast" end
-- The job's own options: taken out of `options:` into their fields.
local FIELD_OPTIONS = { ["--edit-only"] = "edit only", ["--self-replace"] = "self replace", ["--matte"] = "matte",
  ["--method"] = "method" }

local function marker_error(code, key, message)
  error({ marker = true, code = code, key = key, message = message }, 0)
end

-- A key as the docs spell it ("" when it is none): `Edit-Only`, `edit_only`, `edit  only` are `edit only`.
local function marker_key(name)
  local key = table.concat(split_whitespace(name:gsub("[-_]", " "):lower()), " ")
  return contains(MARKER_KEYS, key) and key or ""
end

-- (key, where its value starts) when a known `KEY:` starts at `position` (blanks before it allowed), else nil.
local function key_at(line, position)
  local first = line:find("[^ \t]", position) or #line + 1
  if not line:sub(first, first):match("^[A-Za-z]$") then return nil end
  local name_end = (line:find("[^A-Za-z _-]", first) or #line + 1) - 1
  local colon = line:find("[^ \t]", name_end + 1)
  if not colon or line:sub(colon, colon) ~= ":" then return nil end
  local key = marker_key(line:sub(first, name_end))
  if key == "" then return nil end
  return key, colon + 1
end

-- The index of the `"` that closes a quote opened before `position` (nil: none) and the text between, unescaped.
local function closing_quote(line, position)
  local text = {}
  while position <= #line do
    local char = line:sub(position, position)
    if char == "\\" and position < #line then
      text[#text + 1] = line:sub(position + 1, position + 1)
      position = position + 2
    elseif char == '"' then
      return position, table.concat(text)
    else
      text[#text + 1] = char
      position = position + 1
    end
  end
  return nil, table.concat(text)
end

-- Where the separator before the next field is, right after a quoted value (blanks, then `;`, `|` or a blank and a
-- key): its index, or nil when something else follows.
local function field_after(line, position)
  position = line:find("[^ \t]", position) or #line + 1
  if position <= #line and SEPARATORS[line:sub(position, position)] and key_at(line, position + 1) then
    return position
  end
  local before = line:sub(position - 1, position - 1)
  if position > 1 and (before == " " or before == "\t") and key_at(line, position) then return position - 1 end
  return nil
end

-- The value from `start`: the value, where its separator is (or the line's end + 1), whether it was quoted. A field
-- ends before `;`, `|` or a blank that a known `key:` follows (an EDL keeps `SOURCE: A CAR PROMPT: A JEEP`).
local function field_value(line, start, key)
  local position = line:find("[^ \t]", start) or #line + 1
  if line:sub(position, position) == '"' then
    local closing, text = closing_quote(line, position + 1)
    if not closing then
      marker_error("unclosed-quote", key, "its " .. key .. ": opens a quote that the line does not close: close it on the same line")
    end
    if not line:find("[^ \t]", closing + 1) then return text, #line + 1, true end
    local separator = field_after(line, closing + 1)
    if not separator then
      marker_error("after-quote", key, "its " .. key .. ": has text after the closing quote: put it inside")
    end
    return text, separator, true
  end
  for index = position, #line do
    local char = line:sub(index, index)
    if (SEPARATORS[char] or char == " " or char == "\t") and key_at(line, index + 1) then
      return strip(line:sub(position, index - 1)), index, false
    end
  end
  return strip(line:sub(position)), #line + 1, false
end

-- `word:` (up to three words) at a line's start: a note or a typo the host names as ignored.
local function looks_like_key(head)
  local words = {}
  for word in (head .. " "):gmatch("([^ ]*) ") do words[#words + 1] = word end
  if #words > 3 or not words[1]:match("^[A-Za-z][A-Za-z_-]*$") then return false end
  for index = 2, #words do
    if not words[index]:match("^[A-Za-z_-]+$") then return false end
  end
  return true
end

local function split_lines(text)
  text = text:gsub("\r\n", "\n"):gsub("\r", "\n")
  local lines = {}
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
  return lines
end

-- The marker's fields in order, as {key, value}, and its ignored `word:` lines.
local function marker_fields(text)
  local fields, ignored = {}, array()
  local open_field = nil -- the field a continuation line goes on (nil: none, or a quoted one)
  for _, line in ipairs(split_lines(text)) do
    local first = line:sub(1, 1)
    if (first == " " or first == "\t") and open_field then
      local more = strip(line)
      if more ~= "" then
        local value = fields[open_field][2]
        fields[open_field][2] = value ~= "" and (value .. " " .. more) or more
      end
    else
      open_field = nil
      local key, start = key_at(line, 1)
      if not key then
        local colon = line:find(":", 1, true)
        if colon and looks_like_key(strip(line:sub(1, colon - 1))) then ignored[#ignored + 1] = strip(line) end
      end
      while key do
        local value, separator, quoted = field_value(line, start, key)
        fields[#fields + 1] = { key, value }
        open_field = (not quoted) and #fields or nil
        if separator <= #line then key, start = key_at(line, separator + 1) else key = nil end
      end
    end
  end
  return fields, ignored
end

-- The words of `options:` as Python's shlex.split splits them (POSIX mode); nil and a reason for a quote left open
-- or a `\` at the end.
local function shell_split(text)
  local words, word, quoted = array(), {}, false
  local state, escaped_state = " ", nil -- " ": between words, "a": in a word, "'"/'"': in quotes, "\\": escape
  local function finish_word()
    if #word > 0 or quoted then words[#words + 1] = table.concat(word) end
    word, quoted = {}, false
  end
  for index = 1, #text do
    local char = text:sub(index, index)
    local blank = char == " " or char == "\t" or char == "\r" or char == "\n"
    if state == " " or state == "a" then
      if blank then
        if state == "a" then finish_word() end
        state = " "
      elseif char == "\\" then
        escaped_state, state = "a", "\\"
      elseif char == "'" or char == '"' then
        state, quoted = char, true
      else
        word[#word + 1], state = char, "a"
      end
    elseif state == "'" or state == '"' then
      if char == state then
        state = "a"
      elseif char == "\\" and state == '"' then
        escaped_state, state = state, "\\"
      else
        word[#word + 1] = char
      end
    else -- after a `\`: in double quotes only `"` and `\` are escaped, elsewhere any character
      if escaped_state == '"' and char ~= "\\" and char ~= '"' then word[#word + 1] = "\\" end
      word[#word + 1], state = char, escaped_state
    end
  end
  if state == "'" or state == '"' then return nil, "No closing quotation" end
  if state == "\\" then return nil, "No escaped character" end
  if state == "a" then finish_word() end
  return words
end
M.shell_split = shell_split

-- Levenshtein distance: an unknown option's suggestion (`--stepz` -> `--steps`).
local function distance(a, b)
  local previous = {}
  for j = 0, #b do previous[j] = j end
  for i = 1, #a do
    local current = { [0] = i }
    for j = 1, #b do
      local cost = a:sub(i, i) == b:sub(j, j) and 0 or 1
      current[j] = math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
    end
    previous = current
  end
  return previous[#b]
end

local function closest_option(word)
  local best, best_distance = nil, math.huge
  for _, name in ipairs(OPTION_NAMES) do
    local d = distance(word, name)
    if d < best_distance then best, best_distance = name, d end
  end
  return best_distance <= math.max(2, math.floor(#word / 3)) and best or nil
end

-- A number as docs/markers.md writes it: digits, an optional point and an exponent (no hex, nan or inf).
local function is_decimal(text)
  local body = text:gsub("^[+-]", "")
  local mantissa, exponent = body:match("^([%d%.]+)(.*)$")
  if not mantissa or not (mantissa:match("^%d+%.?%d*$") or mantissa:match("^%.%d+$")) then return false end
  return exponent == "" or exponent:match("^[eE][+-]?%d+$") ~= nil
end

local function fraction(said, key)
  said = strip(said)
  if said == "" then return 0.0 end
  local value = is_decimal(said) and tonumber(said) or nil
  if not value or value < 0 or value > 1 then
    marker_error("bad-number", key, "it says '" .. key .. ": " .. said .. "': write a fraction of the steps from 0 "
      .. "to 1, such as 0.4")
  end
  return value
end

local function yes_no(values, key)
  local said = values[key] or ""
  local word = strip(said):lower()
  if contains(YES, word) then return true end
  if contains(NO, word) then return false end
  marker_error("yes-no", key, "it says '" .. key .. ": " .. said .. "': write '" .. key .. ": yes' or '" .. key
    .. ": no'")
end

-- The `options:` value's engine options as `v2vz edit` arguments, and the job's options taken out: {order = names
-- in the order first given, [name] = every value given}.
local function marker_options(text)
  local words, why = shell_split(text)
  if not words then
    marker_error("bad-options", "options", "its options line '" .. text .. "' cannot be read (" .. why .. "): close "
      .. "its quote")
  end
  local arguments, taken = array(), { order = {} }
  local index = 1
  while index <= #words do
    local word = words[index]
    local equals = word:find("=", 1, true)
    local option = equals and word:sub(1, equals - 1) or word
    local value = equals and word:sub(equals + 1) or nil
    if word:sub(1, 1) == "-" and option:find("[ \t\r\n]") then
      marker_error("quoted-option", "options", "its options line has '" .. word .. "' in quotes, as one word: write "
        .. "the options without quotes (quote only a value with spaces)")
    end
    if OPTION_TAKES_VALUE[option] == nil then
      local near = closest_option(option)
      local hint = near and (": did you mean " .. near .. "?") or (" (write one of " .. table.concat(OPTION_NAMES, ", ")
        .. ")")
      marker_error("unknown-option", "options", "its options: unknown option '" .. word .. "'" .. hint)
    end
    if not OPTION_TAKES_VALUE[option] then
      if equals then marker_error("option-value", "options", "its options: " .. option .. " takes no value: write "
          .. option .. " alone") end
      arguments[#arguments + 1] = option
    else
      if not equals then
        if index + 1 > #words then
          marker_error("option-value", "options", "its options: " .. option .. " needs a value: write "
            .. option .. " VALUE")
        end
        index = index + 1
        value = words[index]
      end
      if FIELD_OPTIONS[option] or option == "--lora" or option == "--matte-start" then
        if not taken[option] then
          taken[option] = {}
          taken.order[#taken.order + 1] = option
        end
        table.insert(taken[option], value)
      else
        arguments[#arguments + 1] = option
        arguments[#arguments + 1] = value
      end
    end
    index = index + 1
  end
  return arguments, taken
end

-- What a marker's text (its name, then its note) asks for: a table shaped like MarkerPrompts.as_dict(), or nil and
-- {code, key, message} (docs/markers.md's codes, a one-line message that says what to write).
local function parse_marker_or_raise(text)
  local fields, ignored = marker_fields(text)
  local values, loras = {}, array()
  for _, field in ipairs(fields) do
    local key, value = field[1], field[2]
    if key == "lora" then
      if strip(value) == "" then
        marker_error("empty-lora", key, "a lora: line needs a path: write `lora: PATH` or PATH:SCALE")
      end
      loras[#loras + 1] = value
    elseif values[key] ~= nil and values[key] ~= value then
      marker_error("twice", key, "it gives " .. key .. ": twice with different values: keep one")
    else
      values[key] = value
    end
  end
  local missing = {}
  for _, key in ipairs({ "source", "prompt" }) do
    if strip(values[key] or "") == "" then missing[#missing + 1] = key .. ":" end
  end
  if #missing > 0 then
    marker_error("missing", missing[1]:sub(1, -2), "it has no " .. table.concat(missing, " and no ") .. " line: write "
      .. "a line `source: <what the clip shows>` and a line `prompt: <the edit>`")
  end
  local prompts = {
    source = values["source"], prompt = values["prompt"], options = array(), ignored = ignored,
    edit_only = values["edit only"] or "", matte = values["matte"] or "", matte_start = 0,
    model = values["model"] or "", loras = array(),
  }
  prompts.preview = yes_no(values, "preview")
  prompts.show_mask = yes_no(values, "show mask")
  prompts.self_replace = fraction(values["self replace"] or "", "self replace")
  local options, taken = marker_options(values["options"] or "")
  for _, option in ipairs(taken.order) do
    local given, key = taken[option], FIELD_OPTIONS[option]
    local line = key and values[key] or ""
    local differ = false
    for _, value in ipairs(given) do differ = differ or value ~= given[1] end
    if option ~= "--lora" and (differ or (line ~= "" and line ~= given[1])) then
      marker_error("twice", key or "options", "it gives " .. option .. " twice with different values: keep one")
    end
  end
  if taken["--matte-start"] then
    local said = taken["--matte-start"][1]
    if not said:match("^%d+$") or tonumber(said) >= 1000000 then
      marker_error("bad-number", "options", "its options: --matte-start takes a whole number of frames from 0, not '"
        .. said .. "': write --matte-start N")
    end
    prompts.matte_start = tonumber(said)
  end
  if taken["--edit-only"] then prompts.edit_only = taken["--edit-only"][1] end
  if taken["--matte"] then prompts.matte = taken["--matte"][1] end
  prompts.method = strip(taken["--method"] and taken["--method"][1] or values["method"] or ""):lower()
  if prompts.method ~= "" and not contains(METHODS, prompts.method) then
    marker_error("bad-method", "method", "it says 'method: " .. prompts.method .. "': write one of "
      .. table.concat(METHODS, ", "))
  end
  if taken["--self-replace"] then prompts.self_replace = fraction(taken["--self-replace"][1], "self replace") end
  prompts.options = options
  for _, lora in ipairs(taken["--lora"] or {}) do loras[#loras + 1] = lora end
  prompts.loras = loras
  for _, lora in ipairs(loras) do
    if strip(lora) == "" then
      marker_error("empty-lora", "lora", "a --lora option needs a path: write --lora PATH or PATH:SCALE")
    end
  end
  if prompts.matte_start ~= 0 and prompts.matte == "" then
    marker_error("matte-start", "matte", "a matte start is for a matte: add a `matte:` line")
  end
  return prompts
end

function M.parse_marker(text)
  local ok, result = pcall(parse_marker_or_raise, text)
  if ok then return result end
  if type(result) == "table" and result.marker then return nil, result end
  error(result, 0)
end

M.MARKER_HELP = 'add a marker named "v2vz" on the clip whose note has two lines, "source: <what the clip shows>" and '
  .. '"prompt: <the edit>" (optional lines: "options: --steps 30", "preview: yes", "edit only: WORDS", '
  .. '"matte: above|PATH", "model: NAME", "lora: PATH[:SCALE]"; docs/markers.md), then run ' .. SCRIPT_MENU .. " again"

-- ---------------------------------------------------------------------------------------------------------------
-- Files and folders (Lua has no directory calls: the shell makes folders, os.rename tells what exists)

local SEP = WINDOWS and "\\" or "/"

local function exists(path)
  if path == nil or path == "" then return false end
  local ok, _, code = os.rename(path, path)
  return ok or code == 13 -- 13: EACCES, it is there but not ours to rename
end

-- A file, not a folder: POSIX opens a folder for reading too, and only a folder has `/.` inside it.
local function is_file(path)
  local handle = io.open(path, "rb")
  if not handle then return false end
  handle:close()
  if WINDOWS then return true end
  local inside = io.open(path .. "/.", "rb")
  if inside then inside:close() end
  return inside == nil
end

local function read_file(path)
  local handle = io.open(path, "rb")
  if not handle then return nil end
  local text = handle:read("*a")
  handle:close()
  return text
end

local function write_file(path, text)
  local handle = io.open(path, "wb")
  if not handle then return false end
  handle:write(text)
  handle:close()
  return true
end

local function dirname(path)
  local cut = path:match("^(.*)[/\\][^/\\]*$")
  if cut == nil then return "" end
  if cut == "" then return path:sub(1, 1) end
  return cut
end

local function basename(path)
  return path:match("([^/\\]*)$")
end

local function join(folder, name)
  if folder:sub(-1) == "/" or folder:sub(-1) == "\\" then return folder .. name end
  return folder .. (folder:find("\\", 1, true) and not folder:find("/", 1, true) and "\\" or SEP) .. name
end

-- POSIX: single quotes around every word. Windows: the C runtime's rules (a `"` escaped, backslashes before it
-- doubled); cmd.exe still expands %NAME% of a variable that exists, which no quoting stops.
local function quote(word)
  word = tostring(word)
  if not WINDOWS then return "'" .. word:gsub("'", "'\\''") .. "'" end
  word = word:gsub('(\\*)"', function(slashes) return slashes .. slashes .. '\\"' end):gsub("(\\+)$", "%1%1")
  return '"' .. word .. '"'
end
M.quote = quote

local function home()
  return os.getenv("HOME") or os.getenv("USERPROFILE") or ""
end

local function expand_user(path)
  if path == "~" then return home() end
  if path:match("^~[/\\]") then return home() .. path:sub(2) end
  return path
end

local function is_absolute(path)
  if WINDOWS then return path:match("^%a:[/\\]") ~= nil or path:match("^[/\\][/\\]") ~= nil end
  return path:sub(1, 1) == "/"
end

local working_folder
local function absolute(path)
  path = expand_user(path)
  if is_absolute(path) then return path end
  if working_folder == nil then
    local pipe = io.popen(WINDOWS and "cd" or "pwd")
    working_folder = pipe and (pipe:read("*l") or "") or ""
    if pipe then pipe:close() end
  end
  return working_folder ~= "" and join(working_folder, path) or path
end

local function make_folder(path)
  if not exists(path) then
    os.execute((WINDOWS and "mkdir " or "mkdir -p ") .. quote(path) .. (WINDOWS and " 2>NUL" or " 2>/dev/null"))
  end
  return exists(path)
end

-- Remove an empty folder (a folder with anything in it stays).
local function remove_folder(path)
  if WINDOWS then
    os.execute("rmdir " .. quote(path) .. " 2>NUL")
  else
    os.remove(path) -- remove() is rmdir() for a folder, and refuses one that is not empty
  end
  return not exists(path)
end

-- Windows paths compare without regard to case or slashes; POSIX ones after collapsing `//`, `/./` and a trailing `/`.
local function norm_folder(path)
  path = tostring(path or "")
  if WINDOWS then path = path:gsub("/", "\\"):lower() end
  local sep = WINDOWS and "\\" or "/"
  local parts, lead = {}, path:sub(1, 1) == sep and sep or ""
  for part in path:gmatch("[^" .. (WINDOWS and "\\\\" or "/") .. "]+") do
    if part == ".." and #parts > 0 and parts[#parts] ~= ".." then
      parts[#parts] = nil
    elseif part ~= "." then
      parts[#parts + 1] = part
    end
  end
  return lead .. table.concat(parts, sep)
end

local function temp_file()
  if not WINDOWS then return os.tmpname() end
  M.temp_count = (M.temp_count or 0) + 1
  return join(os.getenv("TEMP") or os.getenv("TMP") or ".", string.format("v2vz-%d-%d.txt", os.time(), M.temp_count))
end

-- ---------------------------------------------------------------------------------------------------------------
-- The client: found as v2vz_host.find_client finds it, run through the shell with its events read line by line

local function script_path()
  local source = debug.getinfo(1, "S").source or ""
  return source:sub(1, 1) == "@" and source:sub(2) or nil
end

local function unquoted(text)
  text = strip(tostring(text or ""):gsub("^\239\187\191", "")) -- a byte order mark Notepad adds
  if #text >= 2 and text:sub(1, 1) == '"' and text:sub(-1) == '"' then text = strip(text:sub(2, -2)) end
  return text
end

local function installed_client()
  local path = script_path()
  local text = path and read_file(join(dirname(path) ~= "" and dirname(path) or ".", CLIENT_FILE))
  return text and (text:match("^([^\r\n]*)") or "") or ""
end

-- The files a configured path may mean: on Windows also with `.exe` and `.cmd` (`...\Scripts\v2vz` is v2vz.exe).
local function client_files(given)
  given = unquoted(given)
  if given == "" then return {} end
  local suffix = given:match("(%.[^.\\/]*)$")
  suffix = suffix and suffix:lower() or ""
  if WINDOWS and not contains({ ".exe", ".cmd", ".bat", ".com" }, suffix) then
    return { given, given .. ".exe", given .. ".cmd" }
  end
  return { given }
end

local function on_path(name)
  for folder in (os.getenv("PATH") or ""):gmatch(WINDOWS and "[^;]+" or "[^:]+") do
    local candidate = join(unquoted(folder), name)
    if is_file(candidate) then return candidate end
  end
  return nil
end

-- The `v2vz` command: $V2VZ_CLIENT, v2vz-client.txt's line 1, $VIRTUAL_ENV's, or `v2vz` on PATH; nil: none.
function M.find_client()
  local candidates = {}
  for _, given in ipairs({ os.getenv("V2VZ_CLIENT") or "", installed_client() }) do
    for _, file in ipairs(client_files(given)) do candidates[#candidates + 1] = file end
  end
  local venv = unquoted(os.getenv("VIRTUAL_ENV") or "")
  if venv ~= "" then
    if WINDOWS then
      candidates[#candidates + 1] = join(join(venv, "Scripts"), "v2vz.exe")
      candidates[#candidates + 1] = join(join(venv, "Scripts"), "v2vz.cmd")
    else
      candidates[#candidates + 1] = join(join(venv, "bin"), "v2vz")
    end
  end
  for _, candidate in ipairs(candidates) do
    local path = expand_user(candidate)
    if is_file(path) then return path end
  end
  for _, name in ipairs(WINDOWS and { "v2vz.exe", "v2vz.cmd" } or { "v2vz" }) do
    local found = on_path(name)
    if found then return found end
  end
  return nil
end

-- The shell line that runs `client args`, its stderr into `errors`, and prints the exit status as the last line
-- (LuaJIT's pipe:close() does not give it).
local function shell_command(client, args, errors)
  local words = { quote(client) }
  for _, arg in ipairs(args) do words[#words + 1] = quote(arg) end
  local line = table.concat(words, " ")
  if WINDOWS then
    -- cmd /c drops the first and last quote of the line: the outer pair keeps the inner ones; `%^errorlevel%` under
    -- `call` is read when the echo runs, not when the line is read.
    return '"' .. line .. " <NUL 2>" .. quote(errors) .. " & call echo " .. STATUS_MARK .. ' %^errorlevel%"'
  end
  return line .. " </dev/null 2>" .. quote(errors) .. "; printf '\\n%s %d\\n' " .. STATUS_MARK .. ' "$?"'
end
M.shell_command = shell_command

-- What a host shows of a job, from its events (v2vz_host.JobTracker).
local function new_tracker()
  return { job_id = "", frames = {}, outcome = "", reason = "", terminal = nil, error_kind = "", error = "",
    returncode = nil }
end

local function error_line(stderr)
  local lines = {}
  for _, line in ipairs(split_lines(stderr or "")) do
    if strip(line) ~= "" then lines[#lines + 1] = strip(line) end
  end
  for index = #lines, 1, -1 do
    if lines[index]:sub(1, 6) == "error:" then return strip(lines[index]:sub(7)) end
  end
  return lines[#lines] or ""
end

local function track(state, event)
  local kind = event.type
  if event.job_id and state.job_id == "" then state.job_id = tostring(event.job_id) end
  if kind == "frame" and event.path then
    state.frames[int(event.index)] = tostring(event.path)
  elseif kind == "done" or kind == "failed" or kind == "cancelled" then
    state.terminal, state.outcome = event, kind
    if kind == "failed" then
      state.reason = tostring(event.reason or ("the job failed (" .. tostring(event.code or "no reason given") .. ")"))
    elseif kind == "cancelled" then
      state.reason = "cancelled" .. (event.reason and (": " .. tostring(event.reason)) or "")
    end
  elseif kind == "error" then
    state.error_kind, state.error = tostring(event.error or ""), tostring(event.message or "")
  end
end

-- Run `v2vz <args> --events jsonl` to its end, calling on_event(event) for each JSON line as it comes. Returns the
-- tracker (job id, terminal event, typed error, exit status, start_error when the client could not run).
function M.run_client(args, on_event)
  local client = M.find_client()
  if not client then
    refuse("cannot find the v2vz client: run `v2vz plugin install resolve` again, or set V2VZ_CLIENT to the path "
      .. "of the `v2vz` command")
  end
  local full = {}
  for _, arg in ipairs(args) do full[#full + 1] = arg end
  full[#full + 1] = "--events"
  full[#full + 1] = "jsonl"
  local errors = temp_file()
  local state = new_tracker()
  local pipe = io.popen(shell_command(client, full, errors), "r")
  if not pipe then
    refuse("cannot start the v2vz client " .. client .. ": run `v2vz plugin install resolve` again, or set "
      .. "V2VZ_CLIENT")
  end
  local any = false
  for line in pipe:lines() do
    local status = line:match("^" .. STATUS_MARK .. " (%-?%d+)")
    if status then
      state.returncode = tonumber(status)
    else
      local event = parse_line(line)
      if event then
        any = true
        track(state, event)
        on_event(event)
      end
    end
  end
  pipe:close()
  local stderr = read_file(errors) or ""
  os.remove(errors)
  state.returncode = state.returncode or 1
  state.error = state.error ~= "" and state.error or error_line(stderr)
  if not any and (state.returncode == 126 or state.returncode == 127) then
    refuse("cannot start the v2vz client " .. client .. " (" .. state.error .. "): run `v2vz plugin install "
      .. "resolve` again, or set V2VZ_CLIENT")
  end
  if state.outcome == "" then
    state.outcome = "failed"
    state.reason = state.error ~= "" and state.error
      or ("v2vz exited with status " .. state.returncode .. " before the job ended")
  end
  return state
end

-- A `progress` event as a status text, as v2vz_host.progress_text writes it (`window 2/5: edit 12/50`).
local function progress_text(event)
  local stage = tostring(event.stage or "")
  local step, total = int(event.step), int(event.total)
  if total == 0 then total = 1 end
  local window, windows = int(event.window), int(event.windows)
  local where = (windows > 1 and stage ~= "window") and ("window " .. window .. "/" .. windows .. ": ") or ""
  if event.window == 0 and (stage == "inversion" or stage == "null-text" or stage == "edit") then
    where = "anchor frames: "
  end
  if stage == "retry" then
    return where .. "a worker died, editing it again (retry " .. step .. " of " .. total .. ")"
  end
  if stage == "mask" then
    local reason = tostring(event.reason or "")
    return where .. step .. " of " .. total .. " frames to edit" .. (reason ~= "" and (": " .. reason) or "")
  end
  return where .. stage .. " " .. step .. "/" .. total .. (event.cached and " (cached)" or "")
end
M.progress_text = progress_text

-- Job events as a few console lines: each stage once, then every quarter of it (per window).
local function new_progress(clip_name)
  local shown = {}
  return function(event)
    local kind = event.type
    if kind == "submitted" then -- a new job (a preview's final follows its preview): its own lines
      shown = {}
      say("'" .. clip_name .. "': job " .. tostring(event.job_id) .. " submitted")
    elseif kind == "queued" then
      local position = int(event.position)
      say("'" .. clip_name .. "': queued" .. (position > 0 and (" behind " .. position .. " job(s)") or ""))
    elseif kind == "progress" then
      local step, total = int(event.step), int(event.total)
      local quarter = total > 0 and math.floor(4 * step / total) or 0
      local key = int(event.window) .. "\0" .. tostring(event.stage or "") .. "\0" .. quarter
      if not shown[key] then
        shown[key] = true
        say("'" .. clip_name .. "': " .. progress_text(event))
      end
    end
  end
end
M.new_progress = new_progress

-- ---------------------------------------------------------------------------------------------------------------
-- The clip

local function item_name(item)
  local name = item:GetName()
  return (name and name ~= "") and tostring(name) or nil
end

local function video_items(timeline)
  local items = {}
  for index = 1, int(timeline:GetTrackCount("video")) do
    for _, item in ipairs(values_of(timeline:GetItemListInTrack("video", index))) do items[#items + 1] = item end
  end
  return items
end

-- Resolve's Lua proxies of one item need not be the same object: compare where and what they are.
local function same_item(a, b)
  if rawequal(a, b) or a == b then return true end
  return int(a:GetStart()) == int(b:GetStart()) and int(a:GetEnd()) == int(b:GetEnd()) and a:GetName() == b:GetName()
end

local function track_of(timeline, item)
  for index = 1, int(timeline:GetTrackCount("video")) do
    for _, other in ipairs(values_of(timeline:GetItemListInTrack("video", index))) do
      if same_item(item, other) then return index end
    end
  end
  return 0
end

local function markers_of(item)
  local markers = item:GetMarkers()
  return type(markers) == "table" and markers or {}
end

-- The markers in frame order: the first `v2vz` marker is the one with the lowest frame.
local function sorted_markers(item)
  local frames = {}
  for frame in pairs(markers_of(item)) do frames[#frames + 1] = frame end
  table.sort(frames, function(a, b) return (tonumber(a) or 0) < (tonumber(b) or 0) end)
  local out, markers = {}, markers_of(item)
  for _, frame in ipairs(frames) do out[#out + 1] = { frame = frame, marker = markers[frame] } end
  return out
end

local function marker_named(marker, name)
  return type(marker) == "table" and strip(tostring(marker.name or "")):lower() == name
end

local function has_prompt_marker(item)
  for _, entry in ipairs(sorted_markers(item)) do
    if marker_named(entry.marker, PROMPT_MARKER) then return true end
  end
  return false
end

local function clip_property(media, key)
  if not media then return "" end
  local value = media:GetClipProperty(key)
  return value and tostring(value) or ""
end

-- The folder of a media pool item's file ("" when it has none): a frame sequence's job folder.
local function file_folder(media)
  local path = clip_property(media, "File Path")
  return path ~= "" and norm_folder(dirname(path)) or ""
end

local function in_folder(media, folder)
  return folder ~= nil and folder ~= "" and file_folder(media) == norm_folder(folder)
end

local function find_bin(media_pool)
  local root = media_pool:GetRootFolder()
  for _, folder in ipairs(root and values_of(root:GetSubFolderList()) or {}) do
    if folder:GetName() == BIN_NAME then return folder end
  end
  return nil
end

local function v2vz_bin(media_pool)
  return find_bin(media_pool) or media_pool:AddSubFolder(media_pool:GetRootFolder(), BIN_NAME)
end

-- The folders of the v2vz bin's clips: an item whose media is in one of them is a v2vz result.
local function v2vz_folders(media_pool)
  local found, folders = find_bin(media_pool), {}
  for _, media in ipairs(found and values_of(found:GetClipList()) or {}) do
    local folder = file_folder(media)
    if folder ~= "" then folders[folder] = true end
  end
  return folders
end

local function takes_count(item)
  return int(call(item, "GetTakesCount"))
end

-- Whether a timeline item is a v2vz result: its clip, or one of its takes, is in the v2vz bin.
local function is_result(item, ours)
  if ours[file_folder(item:GetMediaPoolItem())] then return true end
  for index = 1, takes_count(item) do
    local take = call(item, "GetTakeByIndex", index)
    if type(take) == "table" and ours[file_folder(take.mediaPoolItem)] then return true end
  end
  return false
end

-- The clip under the playhead: the topmost one, unless it has no `v2vz` marker and a clip under it does (a matte on
-- the track above the clip): then the topmost such clip below.
local function marked_below(timeline, current)
  if has_prompt_marker(current) then return current end
  local start, finish = int(current:GetStart()), int(current:GetEnd())
  for index = track_of(timeline, current) - 1, 1, -1 do
    for _, other in ipairs(values_of(timeline:GetItemListInTrack("video", index))) do
      if int(other:GetStart()) < finish and int(other:GetEnd()) > start and has_prompt_marker(other) then
        return other
      end
    end
  end
  return current
end

-- The clip a v2vz result was made from (the topmost item under it with its record frame and duration that is no
-- result): re-prompting a result re-prompts its clip. Any other item is itself.
local function source_of(timeline, media_pool, item)
  local ours = v2vz_folders(media_pool)
  if not is_result(item, ours) then return item end
  local start, duration = int(item:GetStart()), int(item:GetDuration())
  for index = track_of(timeline, item) - 1, 1, -1 do
    for _, other in ipairs(values_of(timeline:GetItemListInTrack("video", index))) do
      if int(other:GetStart()) == start and int(other:GetDuration()) == duration and not is_result(other, ours) then
        return other
      end
    end
  end
  return item
end

-- The selected video clips where the API has GetSelectedClips (21.0.4+), else the video clip under the playhead.
local function target_items(timeline, media_pool)
  local chosen = {}
  local selected = call(timeline, "GetSelectedClips")
  if type(selected) == "table" then
    local on_video = video_items(timeline)
    for _, item in ipairs(values_of(selected)) do
      for _, other in ipairs(on_video) do
        if same_item(item, other) then
          chosen[#chosen + 1] = item
          break
        end
      end
    end
  end
  if #chosen == 0 then
    local current = timeline:GetCurrentVideoItem()
    if not current then
      refuse("no clip to edit: select a video clip on the timeline or park the playhead over one, then run "
        .. SCRIPT_MENU .. " again")
    end
    chosen = { marked_below(timeline, current) }
  end
  local targets = {}
  for _, item in ipairs(chosen) do
    local source = source_of(timeline, media_pool, item)
    local seen = false
    for _, other in ipairs(targets) do seen = seen or same_item(source, other) end
    if not seen then targets[#targets + 1] = source end
  end
  return targets
end

local function fps_text(fps)
  return string.format("%g", fps)
end

-- The clip's media file and the source frames it uses on the timeline, or a refusal with the reason.
local function clip_range(item, timeline_fps)
  local name = item_name(item) or "this clip"
  local media = item:GetMediaPoolItem()
  if not media then
    refuse("'" .. name .. "' is a generator, title or compound item: v2vz edits clips made from a video file")
  end
  local kind = clip_property(media, "Type")
  for _, word in ipairs(REFUSED_TYPES) do
    if kind:lower():find(word, 1, true) then
      refuse("'" .. name .. "' is a " .. kind .. " item: v2vz edits clips made from a video file")
    end
  end
  local path = clip_property(media, "File Path")
  if path == "" then
    refuse("'" .. name .. "' has no media file (a generator, title or compound item): v2vz edits video files")
  end
  local duration = int(item:GetDuration())
  local start, finish = call(item, "GetSourceStartFrame"), call(item, "GetSourceEndFrame")
  if start == nil then start, finish = item:GetLeftOffset(), nil end
  if start == nil or tonumber(start) == nil or duration <= 0 then
    refuse("Resolve did not give the source range of '" .. name .. "'")
  end
  start = int(start)
  if finish ~= nil and tonumber(finish) then
    local span = int(finish) - start
    if span < 0 then
      refuse("'" .. name .. "' plays in reverse: v2vz edits clips at normal speed; remove the reverse first")
    end
    if math.abs(span - duration) > 1 then
      refuse("'" .. name .. "' is retimed (it uses " .. span .. " source frames for " .. duration .. " timeline "
        .. "frames): v2vz edits clips at 100% speed; reset its speed first")
    end
  end
  local fps = tonumber(strip(clip_property(media, "FPS")))
  if fps and fps ~= 0 and timeline_fps and timeline_fps ~= 0 and math.abs(fps - timeline_fps) > 0.01 then
    refuse("'" .. name .. "' is " .. fps_text(fps) .. " fps on a " .. fps_text(timeline_fps) .. " fps timeline: v2vz "
      .. "places frames one for one, so the media and the timeline need the same frame rate")
  end
  return { name = name, path = path, start = start, frames = duration, fps = fps, record = int(item:GetStart()),
    duration = duration }
end

-- What the clip's `v2vz` marker asks for, or a refusal that says what to add or fix.
local function prompts_from_marker(item, name)
  for _, entry in ipairs(sorted_markers(item)) do
    if marker_named(entry.marker, PROMPT_MARKER) then
      local where = "the v2vz marker on '" .. name .. "'"
      local prompts, problem = M.parse_marker(tostring(entry.marker.name or "") .. "\n"
        .. tostring(entry.marker.note or ""))
      if not prompts then refuse(where .. ": " .. problem.message) end
      if #prompts.ignored > 0 then
        local lines = {}
        for _, line in ipairs(prompts.ignored) do lines[#lines + 1] = "'" .. line .. "'" end
        say(where .. ": ignored " .. table.concat(lines, ", ") .. " (not a v2vz key: docs/markers.md)")
      end
      return prompts
    end
  end
  refuse("no v2vz marker on '" .. name .. "': " .. M.MARKER_HELP)
end

-- ---------------------------------------------------------------------------------------------------------------
-- A local edit: edit-only words, a matte (a file, or the clip on the track above), self-replace, LoRAs

-- The file of a `PATH[:SCALE]` entry: only a trailing `:number` is a scale (`C:\ink.safetensors` is a path).
local function lora_path(entry)
  entry = strip(entry)
  local head, scale = entry:match("^(.*):([^:]*)$")
  if head and head ~= "" and is_decimal(scale) then return head end
  return entry
end

local function loras_of(name, entries)
  local loras = {}
  for _, entry in ipairs(entries) do
    local path = lora_path(entry)
    if path == "" then
      refuse("the v2vz marker on '" .. name .. "' has a LoRA without a path: write 'lora: PATH' or PATH:SCALE")
    end
    local found = expand_user(path)
    if not is_file(found) then
      refuse("the LoRA " .. path .. " of '" .. name .. "' does not exist: give the path of a .safetensors file")
    end
    loras[#loras + 1] = absolute(found) .. strip(entry):sub(#path + 1)
  end
  return loras
end

-- A matte clip's file for the client: a video and its frame; a still (frame 0); an image sequence's image of that
-- frame (Resolve names it `name_[0001-0100].png` or `name_%04d.png`), the sequence going on from there.
local function matte_file(media, path, frame)
  if clip_property(media, "Type"):lower():find("still", 1, true) then return path, 0 end
  local before, first, after = path:match("^(.-)%[(%d+)%-%d+%](.*)$")
  if before then
    return before .. string.format("%0" .. #first .. "d", tonumber(first) + frame) .. after, 0
  end
  if path:find("%%0?%d*d") then return (path:gsub("%%0?%d*d", function(spec) return spec:format(frame) end)), 0 end
  return path, frame
end

-- (--matte, --matte-start) of the clip on the track right above the source that covers its range.
local function matte_above(timeline, item, clip, timeline_fps)
  local name, above = clip.name, track_of(timeline, item) + 1
  local finish = clip.record + clip.duration
  for _, other in ipairs(values_of(timeline:GetItemListInTrack("video", above))) do
    if int(other:GetStart()) < finish and int(other:GetEnd()) > clip.record then
      local matte = clip_range(other, timeline_fps)
      if matte.record > clip.record or matte.record + matte.duration < finish then
        refuse("the matte '" .. matte.name .. "' over '" .. name .. "' on video track " .. above .. ": it covers "
          .. "timeline frames " .. matte.record .. ".." .. (matte.record + matte.duration - 1) .. ", the edit needs "
          .. clip.record .. ".." .. (finish - 1) .. ": extend or move it over the whole range")
      end
      return matte_file(other:GetMediaPoolItem(), matte.path, matte.start + clip.record - matte.record)
    end
  end
  refuse("'" .. name .. "' asks for the matte above it, but video track " .. above .. " has no clip over its frames: "
    .. "put the matte there over the whole clip, or write 'matte: PATH'")
end

-- The local edit the prompts ask for (v2vz_host.LocalEdit's fields), the files made absolute; "show mask" saves the
-- masks beside the job's folder, not for a preview (its final would write them again).
local function local_edit(timeline, item, clip, prompts, job, timeline_fps)
  local name = clip.name
  local edit = { edit_only = strip(prompts.edit_only), self_replace = prompts.self_replace, matte = "",
    matte_start = 0, save_mask = "", loras = loras_of(name, prompts.loras) }
  local matte = strip(prompts.matte)
  if matte:lower() == MATTE_ABOVE then
    edit.matte, edit.matte_start = matte_above(timeline, item, clip, timeline_fps)
  elseif matte ~= "" then
    local path = expand_user(matte)
    if not exists(path) then
      refuse("the matte " .. matte .. " of '" .. name .. "' does not exist: give the path of a video, image or folder")
    end
    edit.matte, edit.matte_start = absolute(path), prompts.matte_start
  end
  if prompts.show_mask and not prompts.preview then
    if edit.edit_only == "" and edit.matte == "" then
      refuse("'" .. name .. "': show mask needs a local edit: add an 'edit only: WORDS' or a 'matte:' line")
    end
    job.mask_dir = job.dir .. MASK_SUFFIX
    edit.save_mask = job.mask_dir
  end
  return edit
end

-- `v2vz edit` arguments as v2vz_host.edit_request(...).args() builds them, in its order (the client adds
-- `--events jsonl`); tests/plugins/test_resolve_lua.py holds the two equal.
function M.edit_args(prompts, clip, out_dir, edit)
  local args = { "edit", clip.path, "--prompt", prompts.prompt, "--source-prompt", prompts.source, "--start",
    tostring(clip.start), "--frames", tostring(clip.frames), "--out", out_dir }
  local function add(...)
    for _, word in ipairs({ ... }) do args[#args + 1] = word end
  end
  if prompts.method ~= "" then add("--method", prompts.method) end
  for _, option in ipairs(prompts.options) do add(option) end
  if prompts.model ~= "" then add("--model", prompts.model) end
  if prompts.preview then add("--preview") end
  local words = table.concat(split_whitespace(edit.edit_only), " ")
  if words ~= "" then add("--edit-only", words) end
  if edit.matte ~= "" then add("--matte", edit.matte) end
  if edit.matte_start > 0 then add("--matte-start", tostring(edit.matte_start)) end
  if edit.self_replace > 0 then add("--self-replace", float_repr(edit.self_replace)) end
  if edit.save_mask ~= "" then add("--save-mask", edit.save_mask) end
  for _, lora in ipairs(edit.loras) do add("--lora", strip(lora)) end
  return args
end

-- `v2vz final PREVIEW_JOB` (v2vz_host.FinalRequest): the preview's files stay until the final replaced it.
function M.final_args(preview_job, out_dir)
  return { "final", preview_job, "--out", out_dir, "--keep-preview" }
end

-- ---------------------------------------------------------------------------------------------------------------
-- Job markers: the job id on the clip, so that running the script again re-attaches

-- The clip's `v2vz job` markers, newest first, as their customData plus "frame" (no kind: an edit).
local function job_markers(item)
  local jobs = {}
  for _, entry in ipairs(sorted_markers(item)) do
    if marker_named(entry.marker, JOB_MARKER) then
      local data = tostring(entry.marker.customData or "")
      local parsed = json.decode(data)
      if type(parsed) ~= "table" then parsed = { job = strip(data) } end
      if parsed.job and parsed.job ~= "" then
        parsed.kind = parsed.kind or KIND_EDIT
        parsed.frame = entry.frame
        jobs[#jobs + 1] = parsed
      end
    end
  end
  table.sort(jobs, function(a, b) return tostring(a.submitted or "") > tostring(b.submitted or "") end)
  return jobs
end

-- "placed", "failed", "lost", ... once a script has finished with the job, else nil (it may still run).
local function job_state(job)
  if not job.dir or job.dir == "" then return nil end
  local data = json.decode(read_file(join(job.dir, STATE_FILE)) or "")
  return type(data) == "table" and data.state or nil
end

-- The clip's jobs that may still run, newest first: no state file says how they ended, and none is a preview that
-- a final was made of.
local function running_jobs(item)
  local jobs, made_final, running = job_markers(item), {}, {}
  for _, job in ipairs(jobs) do
    if job.kind == KIND_FINAL and job.preview_job then made_final[job.preview_job] = true end
  end
  for _, job in ipairs(jobs) do
    if job_state(job) == nil and not made_final[job.job] then running[#running + 1] = job end
  end
  return running
end

local function finish_job(folder, job_id, state)
  if folder and folder ~= "" and make_folder(folder) then
    write_file(join(folder, STATE_FILE), json.encode({ job = job_id, state = state }))
  end
end

-- When a job was submitted, as an ISO time that sorts: a counter orders the jobs of one second.
local function submitted_stamp()
  M.stamp_count = (M.stamp_count or 0) + 1
  return os.date("%Y-%m-%dT%H:%M:%S") .. string.format(".%06d", M.stamp_count % 1000000)
end

-- The frame of the clip's oldest finished job marker, deleted to make room; nil when there is none.
local function free_marker_frame(item)
  local running = {}
  for _, job in ipairs(running_jobs(item)) do running[job.job] = true end
  local jobs = job_markers(item)
  for index = #jobs, 1, -1 do
    local job = jobs[index]
    if not running[job.job] and call(item, "DeleteMarkerAtFrame", job.frame) then return int(job.frame) end
  end
  return nil
end

-- A `v2vz job` marker on the first free frame of the clip; the prompt marker stays as it is.
local function add_job_marker(item, job)
  local used = {}
  for frame in pairs(markers_of(item)) do used[math.floor(tonumber(frame) or -1)] = true end
  local frame
  for candidate = 0, math.max(int(item:GetDuration()), 1) - 1 do
    if not used[candidate] then
      frame = candidate
      break
    end
  end
  frame = frame or free_marker_frame(item)
  local data = {}
  for _, key in ipairs(JOB_DATA_KEYS) do
    if job[key] and job[key] ~= "" then data[key] = job[key] end
  end
  data.submitted = submitted_stamp()
  local what = ""
  if job.kind == KIND_PREVIEW then what = " (preview)" end
  if job.kind == KIND_FINAL then what = " (final of preview " .. tostring(job.preview_job) .. ")" end
  local note = "v2vz job " .. job.job .. what .. ": " .. tostring(job.prompt or "")
  return frame ~= nil and item:AddMarker(frame, JOB_MARKER_COLOR, JOB_MARKER, note, 1, json.encode(data)) and true
    or false
end

-- ---------------------------------------------------------------------------------------------------------------
-- Placing the result: a take of the v2vz item over the clip, else a clip on a new track

local function no_takes(message)
  error({ no_takes = message }, 0)
end

local function take_label(job)
  local prompt = table.concat(split_whitespace(tostring(job.prompt or "")), " ")
  if utf8_length(prompt) > LABEL_LENGTH then prompt = utf8_head(prompt, LABEL_LENGTH - 3) .. "..." end
  return "v2vz: " .. prompt .. (job.kind == KIND_PREVIEW and " (preview)" or "")
end

-- The job's PNG frames as one image sequence in the v2vz bin, named `label`, `comment` in its Comments.
local function import_frames(media_pool, frame_paths, label, comment)
  local folder, count = dirname(frame_paths[1]), #frame_paths
  local target = v2vz_bin(media_pool)
  if not target or not media_pool:SetCurrentFolder(target) then
    refuse("cannot create or open the '" .. BIN_NAME .. "' bin in the media pool")
  end
  local imported = values_of(media_pool:ImportMedia({
    { FilePath = join(folder, FRAME_PATTERN), StartIndex = 0, EndIndex = count - 1 } }))
  if not imported[1] then refuse("Resolve did not import the " .. count .. " frames in " .. folder) end
  call(imported[1], "SetClipProperty", "Clip Name", label)
  call(imported[1], "SetMetadata", "Comments", comment)
  return imported[1]
end

-- (track, item) for each item on a track above the clip with exactly its record frame and duration, topmost first.
local function items_over(timeline, item, clip)
  local found = {}
  for index = int(timeline:GetTrackCount("video")), track_of(timeline, item) + 1, -1 do
    for _, other in ipairs(values_of(timeline:GetItemListInTrack("video", index))) do
      if int(other:GetStart()) == clip.record and int(other:GetDuration()) == clip.duration then
        found[#found + 1] = { index, other }
      end
    end
  end
  return found
end

local function v2vz_item_over(timeline, media_pool, item, clip)
  local ours = v2vz_folders(media_pool)
  for _, entry in ipairs(items_over(timeline, item, clip)) do
    if is_result(entry[2], ours) then return entry[1], entry[2] end
  end
  return nil
end

-- The index of the (last) take of `target` whose frames are in `folder`, 0 when none is.
local function take_index_of(target, folder)
  for index = takes_count(target), 1, -1 do
    local take = call(target, "GetTakeByIndex", index)
    if type(take) == "table" and in_folder(take.mediaPoolItem, folder) then return index end
  end
  return 0
end

local function placement_problems(placed, clip)
  local start, length = int(placed:GetStart()), int(placed:GetDuration())
  if start == clip.record and length == clip.duration then return {} end
  return { "it starts at frame " .. start .. " with " .. length .. " frames, but the clip starts at " .. clip.record
    .. " with " .. clip.duration .. " frames" }
end

-- Select the take of `target` whose frames are in `folder` and read the item back: its index and what differs.
local function select_take(target, folder, clip)
  local index = take_index_of(target, folder)
  if index == 0 then return 0, { "no take of the item holds the frames in " .. folder } end
  local problems = {}
  if int(call(target, "GetSelectedTakeIndex")) ~= index and not call(target, "SelectTakeByIndex", index) then
    problems[#problems + 1] = "Resolve did not select take " .. index
  end
  local selected = int(call(target, "GetSelectedTakeIndex"))
  if selected ~= index and #problems == 0 then
    problems[#problems + 1] = "take " .. selected .. " is selected, not take " .. index
  end
  for _, problem in ipairs(placement_problems(target, clip)) do problems[#problems + 1] = problem end
  return index, problems
end

-- Add `media` as a take of the v2vz item `target`, select it and read back. A Resolve without AddTake (nil) or that
-- refuses the take (false, or no take added) raises no_takes: the caller uses a new track.
local function add_take(target, media, folder, clip)
  local before = takes_count(target)
  local added = call(target, "AddTake", media)
  if added == nil then no_takes("this Resolve has no takes (TimelineItem.AddTake)") end
  if not added then no_takes("Resolve did not add the edit as a take (AddTake returned False)") end
  local after = takes_count(target)
  if after <= before then
    no_takes("Resolve accepted the take, but the item still has " .. after .. " take(s)")
  end
  return select_take(target, folder, clip)
end

local function placement(clip, what, track, take, problems, verb)
  local where = "video track " .. track .. ((take and take > 0) and (", take " .. take) or "")
  local message
  if #problems > 0 then
    message = "'" .. clip.name .. "': the " .. what .. " on " .. where .. ": " .. table.concat(problems, "; ")
      .. ": check its placement"
  else
    message = "'" .. clip.name .. "': the " .. what .. " " .. (verb or "is on") .. " " .. where .. " at frame "
      .. clip.record .. ", " .. clip.duration .. " frames"
  end
  return { exact = #problems == 0, message = message, track = track, take = (take and take > 0) and take or nil }
end

-- Append the sequence on video track `track` at the clip's record frame and read the track back.
local function append_on_track(timeline, media_pool, clip, media, folder, count, track, what, verb)
  local appended = media_pool:AppendToTimeline({ { mediaPoolItem = media, startFrame = 0, endFrame = count,
    mediaType = 1, trackIndex = track, recordFrame = clip.record } })
  local placed = values_of(timeline:GetItemListInTrack("video", track))
  local ours = {}
  for _, other in ipairs(placed) do
    if in_folder(other:GetMediaPoolItem(), folder) then ours[#ours + 1] = other end
  end
  if #ours == 0 then ours = placed end
  if not appended or #values_of(appended) == 0 or #ours == 0 then
    refuse("Resolve did not place the result on video track " .. track)
  end
  local problems = #ours == 1 and placement_problems(ours[1], clip) or { "the track has " .. #ours .. " items" }
  return placement(clip, what, track, 0, problems, verb)
end

local function place_on_new_track(timeline, media_pool, clip, media, folder, count, what)
  if not timeline:AddTrack("video") then refuse("Resolve did not add a video track for the result") end
  local track = int(timeline:GetTrackCount("video"))
  timeline:SetTrackName("video", track, TRACK_NAME)
  return append_on_track(timeline, media_pool, clip, media, folder, count, track, what)
end

-- Run `attempt`; a no_takes error becomes (nil, its message), any other error goes on.
local function try_takes(attempt, ...)
  local results = { pcall(attempt, ...) }
  if results[1] then return true, unpack(results, 2, table.maxn(results)) end
  if type(results[2]) == "table" and results[2].no_takes then return false, results[2].no_takes end
  error(results[2], 0)
end

-- An edit (or a preview): a take of the v2vz item over the clip where there is one and Resolve takes it, else a
-- clip on a new video track (the first edit, or a Resolve without takes: the console says so).
local function place_edit(timeline, media_pool, item, clip, media, folder, count, what)
  local track, target = v2vz_item_over(timeline, media_pool, item, clip)
  if track then
    local ok, take, problems = try_takes(add_take, target, media, folder, clip)
    if ok then return placement(clip, what, track, take, problems) end
    say("'" .. clip.name .. "': " .. take .. ": the " .. what .. " goes on a new track instead")
  end
  return place_on_new_track(timeline, media_pool, clip, media, folder, count, what)
end

-- Where the preview is over the clip: track, item, its take index (0: a clip of its own); nil: nowhere.
local function find_preview(timeline, item, clip, preview_dir)
  for _, entry in ipairs(items_over(timeline, item, clip)) do
    local other = entry[2]
    if takes_count(other) > 0 then
      local take = take_index_of(other, preview_dir)
      if take > 0 then return entry[1], other, take end
    elseif in_folder(other:GetMediaPoolItem(), preview_dir) then
      return entry[1], other, 0
    end
  end
  return nil
end

-- The final in the preview's place: the preview's take replaced by the final's, or the preview's clip deleted and
-- the final appended on its track at the same record frame. preview_kept: Resolve refused to take the preview off.
local function replace_preview(timeline, media_pool, item, clip, media, folder, count, preview_dir)
  local name = clip.name
  local track, target, preview_take = find_preview(timeline, item, clip, preview_dir)
  if not track then
    say("'" .. name .. "': the preview is no longer over the clip: placing the final as a new edit")
    return place_edit(timeline, media_pool, item, clip, media, folder, count, "final")
  end
  local function kept_on_new_track()
    local kept = place_on_new_track(timeline, media_pool, clip, media, folder, count, "final")
    kept.preview_kept = true
    return kept
  end
  if preview_take > 0 then
    local ok, why = try_takes(add_take, target, media, folder, clip)
    if not ok then
      say("'" .. name .. "': " .. why .. ": the final goes on a new track and the preview stays")
      return kept_on_new_track()
    end
    if not call(target, "DeleteTakeByIndex", preview_take) then
      local take, problems = select_take(target, folder, clip)
      problems[#problems + 1] = "Resolve did not delete the preview's take " .. preview_take
      local placed = placement(clip, "final", track, take, problems)
      placed.preview_kept = true
      return placed
    end
    local take, problems = select_take(target, folder, clip) -- the indexes after the preview's moved down
    return placement(clip, "final", track, take, problems, "replaced the preview on")
  end
  if not call(timeline, "DeleteClips", { target }, false) then
    say("'" .. name .. "': Resolve did not take the preview off video track " .. track .. ": the final goes on a new "
      .. "track")
    return kept_on_new_track()
  end
  return append_on_track(timeline, media_pool, clip, media, folder, count, track, "final", "replaced the preview on")
end

-- Once the final replaced it: the preview's clip leaves the v2vz bin and its folder goes. Only what its job made
-- there goes (its frame_NNNNNN.png files, the client's record, the state file): the folder stays when anything else
-- is in it.
local function drop_preview(media_pool, preview_dir, frames)
  local found, clips = find_bin(media_pool), {}
  for _, media in ipairs(found and values_of(found:GetClipList()) or {}) do
    if in_folder(media, preview_dir) then clips[#clips + 1] = media end
  end
  if #clips > 0 then call(media_pool, "DeleteClips", clips) end
  local index = 0
  while index < frames or is_file(join(preview_dir, string.format(FRAME_PATTERN, index))) do
    os.remove(join(preview_dir, string.format(FRAME_PATTERN, index)))
    index = index + 1
  end
  os.remove(join(preview_dir, CLIENT_RECORD))
  os.remove(join(preview_dir, STATE_FILE))
  remove_folder(preview_dir)
end

-- "show mask": the job's saved masks as one image sequence in the v2vz bin, named after the edit ("": none).
local function import_masks(media_pool, job, clip)
  local folder = job.mask_dir
  for index = clip.start, clip.start + clip.frames - 1 do
    if not is_file(join(folder, string.format(MASK_PATTERN, index))) then
      say("'" .. clip.name .. "': no masks to import in " .. folder)
      return ""
    end
  end
  local target = v2vz_bin(media_pool)
  local imported = target and media_pool:SetCurrentFolder(target) and values_of(media_pool:ImportMedia({
    { FilePath = join(folder, MASK_PATTERN), StartIndex = clip.start, EndIndex = clip.start + clip.frames - 1 } }))
  if not imported or not imported[1] then
    say("'" .. clip.name .. "': Resolve did not import the masks in " .. folder)
    return ""
  end
  local label = take_label(job):gsub("^v2vz: ", "v2vz mask: ")
  call(imported[1], "SetClipProperty", "Clip Name", label)
  say("'" .. clip.name .. "': its masks are in the " .. BIN_NAME .. " bin (" .. label .. ")")
  return label
end

-- ---------------------------------------------------------------------------------------------------------------
-- One clip

local function output_root()
  local explicit = M.config.output_dir or strip(os.getenv("V2VZ_OUTPUT_DIR") or "")
  if explicit ~= "" then return expand_user(explicit) end
  return join(join(home(), "v2vz"), "resolve")
end

-- A fresh folder name per job (`v2vz edit` refuses a folder that holds frames): a counter after the time.
local function job_folder(clip)
  local stem = basename(clip.path):gsub("%.[^.]*$", ""):gsub("[^%w%._%-]+", "_"):sub(1, 40)
  if stem == "" then stem = "clip" end
  local base = join(output_root(), string.format("%s-%d-%d-%s", stem, clip.start, clip.frames,
    os.date("%Y%m%d-%H%M%S")))
  M.folder_count = M.folder_count or 0
  local folder
  repeat
    M.folder_count = M.folder_count + 1
    folder = base .. "-" .. M.folder_count
  until not exists(folder)
  return folder
end

local function failure_message(name, state)
  local terminal, job_id, problem = state.terminal or {}, state.job_id, state.error
  if terminal.type == "failed" or terminal.type == "cancelled" then
    return "'" .. name .. "': job " .. job_id .. " " .. terminal.type .. ": " .. tostring(terminal.reason or problem)
  end
  if state.error_kind == "DaemonUnavailable" or state.error_kind == "DaemonUnauthenticated" then
    return "'" .. name .. "': the v2vz daemon is not running or not reachable: start it in a terminal with `v2vz "
      .. "serve`, then run " .. SCRIPT_MENU .. " again (" .. problem .. ")"
  end
  if job_id ~= "" or state.error_kind == "JobLost" then -- the job may still run: the marker finds it again
    return "'" .. name .. "': lost job " .. (job_id ~= "" and job_id or "(no id)") .. " before it ended ("
      .. (problem ~= "" and problem or "no reason given") .. "): run the script again to re-attach"
  end
  return "'" .. name .. "': v2vz could not start the edit: " .. (problem ~= "" and problem or "no reason given")
end

-- The clip turns Pink and the console says why: one clip's failed result.
local function failed(item, name, job_id, message, extra)
  item:SetClipColor(COLOR_FAILED)
  say(message)
  local result = { clip = name, state = "failed", job = job_id, message = message }
  for key, value in pairs(extra or {}) do result[key] = value end
  return result
end

-- Place a done job's frames (a final: in its preview's place), or say why there are none; the clip's colour and
-- the job's state file follow.
local function finish(timeline, media_pool, item, clip, state, job)
  local name, job_id, kind = clip.name, state.job_id, job.kind or KIND_EDIT
  local terminal = state.terminal or {}
  local extra = { kind = kind, preview = kind == KIND_FINAL and job.preview_job or nil }
  local kept = kind == KIND_FINAL and (" (the final of preview job " .. tostring(job.preview_job) .. "; the preview "
    .. "stays on the timeline)") or ""
  if terminal.type ~= "done" then
    if terminal.type == "failed" or terminal.type == "cancelled" then
      finish_job(job.dir, job_id, terminal.type)
    elseif job_id == "" and job.dir then -- never submitted: the fresh folder goes (if nothing is in it)
      remove_folder(job.dir)
    end
    return failed(item, name, job_id, failure_message(name, state) .. kept, extra)
  end
  local paths = {}
  for _, path in ipairs(values_of(terminal.frame_paths)) do paths[#paths + 1] = tostring(path) end
  if #paths ~= clip.frames then
    finish_job(job.dir, job_id, "failed")
    return failed(item, name, job_id, "'" .. name .. "': job " .. job_id .. " wrote " .. #paths .. " frames, the clip "
      .. "has " .. clip.frames .. kept, extra)
  end
  local folder = dirname(paths[1])
  local what = ""
  if kind == KIND_PREVIEW then what = " (preview)" end
  if kind == KIND_FINAL then what = " (final of preview " .. tostring(job.preview_job) .. ")" end
  local comment = "v2vz job " .. job_id .. what .. ": " .. tostring(job.prompt or "")
  local ok, placed = pcall(function()
    local media = import_frames(media_pool, paths, take_label(job), comment)
    if kind == KIND_FINAL then
      return replace_preview(timeline, media_pool, item, clip, media, folder, #paths, job.preview_dir)
    end
    return place_edit(timeline, media_pool, item, clip, media, folder, #paths, kind)
  end)
  if not ok then
    if type(placed) ~= "table" or not placed.refused then error(placed, 0) end
    finish_job(folder, job_id, "failed")
    return failed(item, name, job_id, placed.refused .. kept, extra)
  end
  finish_job(folder, job_id, "placed")
  if kind == KIND_FINAL and not placed.preview_kept then drop_preview(media_pool, job.preview_dir, clip.frames) end
  item:SetClipColor(placed.exact and COLOR_DONE or COLOR_CHECK)
  say(placed.message)
  local result = { clip = name, state = placed.exact and "placed" or "misplaced", job = job_id,
    message = placed.message, track = placed.track, take = placed.take }
  for key, value in pairs(extra) do result[key] = value end
  return result
end

-- Run `v2vz edit|final ...` into the job's fresh folder to the job's end; a `v2vz job` marker keeps the job id.
local function submit(item, job, args, progress)
  local name = item_name(item) or "clip"
  make_folder(job.dir)
  item:SetClipColor(COLOR_RUNNING)
  return M.run_client(args, function(event)
    if event.type == "submitted" and event.job_id then
      job.job = tostring(event.job_id)
      if not add_job_marker(item, job) then
        say("'" .. name .. "': could not add the job marker (re-attaching will not find job " .. job.job .. ")")
      end
    end
    progress(event)
  end)
end

-- Follow the clip's job again: its tracker, or nil when the daemon no longer knows it.
local function reattach(item, job, progress)
  local name, job_id = item_name(item) or "clip", job.job
  local what = ({ [KIND_PREVIEW] = "preview job", [KIND_FINAL] = "final job" })[job.kind] or "job"
  say("'" .. name .. "': re-attaching to " .. what .. " " .. job_id)
  item:SetClipColor(COLOR_RUNNING)
  local state = M.run_client({ "attach", job_id }, progress)
  if state.job_id == "" then state.job_id = job_id end
  if state.terminal == nil and state.error_kind == "JobNotFound" then
    finish_job(job.dir, job_id, "lost") -- the daemon no longer knows it: start a new job
    say("'" .. name .. "': the daemon has no job " .. job_id .. " any more; starting a new one")
    return nil
  end
  return state
end

-- `v2vz final PREVIEW --out FOLDER --keep-preview` right after the preview is placed; it replaces the preview.
local function make_final(timeline, media_pool, item, clip, preview, placed, progress)
  local final = { kind = KIND_FINAL, prompt = preview.prompt, dir = job_folder(clip), preview_job = placed.job,
    preview_dir = preview.dir }
  say("'" .. clip.name .. "': the preview is placed; making its final (job " .. placed.job .. ")")
  local state = submit(item, final, M.final_args(placed.job, final.dir), progress)
  return finish(timeline, media_pool, item, clip, state, final)
end

-- Edit one clip (or re-attach to its job) and place the result; a preview is placed, then its final made.
local function edit_clip(timeline, media_pool, item, timeline_fps)
  local name = item_name(item) or "clip"
  local clip = clip_range(item, timeline_fps)
  local progress = new_progress(name)
  local running = running_jobs(item)
  local job = running[1]
  local state = job and reattach(item, job, progress) or nil
  if state == nil then
    local prompts = prompts_from_marker(item, name)
    job = { kind = prompts.preview and KIND_PREVIEW or KIND_EDIT, prompt = prompts.prompt, dir = job_folder(clip) }
    local edit = local_edit(timeline, item, clip, prompts, job, timeline_fps)
    local args = M.edit_args(prompts, clip, job.dir, edit)
    say("'" .. name .. "': " .. (prompts.preview and "a preview of " or "editing ") .. "source frames " .. clip.start
      .. ".." .. (clip.start + clip.frames - 1))
    state = submit(item, job, args, progress)
  end
  local result = finish(timeline, media_pool, item, clip, state, job)
  local placed = result.state == "placed" or result.state == "misplaced"
  if job.kind == KIND_PREVIEW and placed then
    result = make_final(timeline, media_pool, item, clip, job, result, progress)
    placed = result.state == "placed" or result.state == "misplaced"
  end
  if job.mask_dir and placed then result.mask = import_masks(media_pool, job, clip) end
  return result
end

-- ---------------------------------------------------------------------------------------------------------------
-- Entry point

-- Resolve as a menu script finds it: the argument, the injected `resolve`, Resolve(), bmd or fusion.
local function find_resolve(resolve)
  if resolve then return resolve end
  local injected = rawget(_G, "resolve")
  if injected then return injected end
  local function try(get)
    local ok, found = pcall(get)
    return ok and found or nil
  end
  return try(function() return rawget(_G, "Resolve") and Resolve() end)
    or try(function() return rawget(_G, "bmd") and bmd.scriptapp("Resolve") end)
    or try(function()
      local fusion = rawget(_G, "fusion") or rawget(_G, "app")
      return fusion and fusion:GetResolve()
    end)
end

-- Run `body`; a refusal gives its message, any other error goes on.
local function refusal_of(body, ...)
  local results = { pcall(body, ...) }
  if results[1] then return nil, unpack(results, 2, table.maxn(results)) end
  if type(results[2]) == "table" and results[2].refused then return results[2].refused end
  error(results[2], 0)
end

-- Re-prompt the selected clips (or the clip under the playhead). Returns one result table per clip.
function M.main(resolve)
  local results = {}
  local problem = refusal_of(function()
    resolve = find_resolve(resolve)
    if not resolve then refuse("run this script from DaVinci Resolve: " .. SCRIPT_MENU) end
    local manager = resolve:GetProjectManager()
    local project = manager and manager:GetCurrentProject()
    local timeline = project and project:GetCurrentTimeline()
    if not timeline then refuse("open a timeline first") end
    local media_pool = project:GetMediaPool()
    local timeline_fps = tonumber(strip(tostring(project:GetSetting("timelineFrameRate") or "")))
    for _, item in ipairs(target_items(timeline, media_pool)) do
      local why, result = refusal_of(edit_clip, timeline, media_pool, item, timeline_fps)
      if why then
        say(why)
        result = { clip = item_name(item), state = "refused", message = why }
      end
      results[#results + 1] = result
    end
  end)
  if problem then
    say(problem)
    results[#results + 1] = { state = "refused", message = problem }
  end
  return results
end

if not rawget(_G, "V2VZ_NO_MAIN") then M.main() end

return M
