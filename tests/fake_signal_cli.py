"""A stand-in for signal-cli, written by a test as an executable: it checks its arguments
as signal-cli documents them (-o json -a ACCOUNT send --message-from-stdin RECIPIENT...
[-g GROUP...]), reads the message from standard input, records both (and the names of
its environment's variables), and answers as the test's plan file says: an exit code,
per-recipient result types in signal-cli's JSON output, a message on stderr."""

FAKE_SIGNAL_CLI = r'''#!{python}
"""A stand-in for signal-cli: checks its arguments as signal-cli documents them (-o json
-a ACCOUNT send --message-from-stdin RECIPIENT... [-g GROUP...]), reads the message from
standard input, records both, and answers as the file {script} says (exit code, JSON)."""
import json, os, sys
log, script = {log!r}, {script!r}
args = sys.argv[1:]
ok = (args[:4] == ["-o", "json", "-a", {account!r}] and args[4:6] == ["send",
      "--message-from-stdin"])
text = sys.stdin.read()
with open(log, "a") as f:
    f.write(json.dumps({{"argv": args, "text": text, "env": sorted(os.environ)}}) + "\n")
if not ok:
    print("usage error", file=sys.stderr)
    sys.exit(1)
plan = json.load(open(script)) if os.path.exists(script) else {{}}
answers = plan.get("answers", [])
answer = answers.pop(0) if answers else plan.get("steady", {{"code": 0}})
json.dump(dict(plan, answers=answers), open(script, "w"))
if answer.get("sleep"):
    import time; time.sleep(answer["sleep"])
rest = args[6:]
groups = rest[rest.index("-g") + 1:] if "-g" in rest else []
people = rest[:rest.index("-g")] if "-g" in rest else rest
types = answer.get("types", {{}})
results = [{{"recipientAddress": {{"number": p}}, "type": types.get(p, "SUCCESS")}}
           for p in people]
results += [{{"recipientAddress": {{"number": "+10000000000"}}, "groupId": g,
             "type": types.get("group:" + g, "SUCCESS")}} for g in groups]
for result in results:
    if result["type"] == "RATE_LIMIT_FAILURE":
        result["retryAfterSeconds"] = 9
print(json.dumps({{"timestamp": 1700000000000, "results": results}}))
if answer.get("stderr"):
    print(answer["stderr"], file=sys.stderr)
sys.exit(answer.get("code", 0))
'''
