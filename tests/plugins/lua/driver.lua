--[[
Runs the Lua Resolve script's functions for tests/plugins/lua_kit.py: `luajit driver.lua MODE INPUT OUTPUT`, the
script loaded as a module (V2VZ_NO_MAIN), INPUT and OUTPUT JSON files (the script's own JSON reader and writer).

  parse      INPUT: a list of marker texts; OUTPUT: per text the parsed fields, or {"error": {"code", "key",
             "message"}}.
  split      INPUT: a list of `options:` values; OUTPUT: per value its words, or {"error": reason}.
  scenarios  INPUT: a list of timelines (tests/plugins/lua/scenarios.lua builds them on tests/fake_resolve.lua and
             runs the script on each); OUTPUT: per timeline its dump.
]]

local here = (debug.getinfo(1, "S").source:sub(2)):match("^(.*)[/\\]") or "."
local repo = here .. "/../../.."
V2VZ_NO_MAIN = true
local script = dofile(repo .. "/plugins/davinci/v2vz Re-prompt clip.lua")
local json = script.json

local mode, input, output = arg[1], arg[2], arg[3]
local handle = assert(io.open(input, "rb"))
local request = assert(json.decode(handle:read("*a")), "the input is not JSON")
handle:close()

local answers = script.array()
if mode == "parse" then
  for index, text in ipairs(request) do
    local prompts, problem = script.parse_marker(text)
    answers[index] = prompts or { error = { code = problem.code, key = problem.key, message = problem.message } }
  end
elseif mode == "split" then
  for index, text in ipairs(request) do
    local words, why = script.shell_split(text)
    answers[index] = words or { error = why }
  end
elseif mode == "scenarios" then
  local run = dofile(here .. "/scenarios.lua")
  for index, scenario in ipairs(request) do answers[index] = run(script, repo, scenario) end
else
  error("unknown mode " .. tostring(mode))
end

handle = assert(io.open(output, "wb"))
handle:write(json.encode(answers))
handle:close()
