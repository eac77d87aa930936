<#
.SYNOPSIS
  Builds the till agent on Windows into dist\kopilka-agent\ from installer\kopilka-agent.spec,
  like installer/build.sh on Linux. UNTESTED here: no Windows machine in the project's CI.
  Never set PYTHONOPTIMIZE: assertions guard invariants in the agent.
#>
$ErrorActionPreference = "Stop"
$Root = Split-Path -Parent $PSScriptRoot
$Work = Join-Path $Root "build\installer"
$Venv = Join-Path $Work "venv"
$Dist = Join-Path $Root "dist"
if ($env:PYTHONOPTIMIZE) { throw "PYTHONOPTIMIZE is set; the agent must keep its assertions" }

if (-not (Test-Path (Join-Path $Venv "Scripts\python.exe"))) {
    py -3.11 -m venv $Venv
}
& (Join-Path $Venv "Scripts\python.exe") -m pip install --quiet "$Root[installer]"
& (Join-Path $Venv "Scripts\pyinstaller.exe") --noconfirm --clean --log-level WARN `
    --distpath $Dist --workpath (Join-Path $Work "pyinstaller") `
    (Join-Path $Root "installer\kopilka-agent.spec")
if ($LASTEXITCODE -ne 0) { throw "pyinstaller failed" }

# escpos's printer database, parsed once here instead of at every start (agent_main.py).
$Escpos = Join-Path $Dist "kopilka-agent\_internal\escpos"
$env:ESCPOS_CAPABILITIES_PICKLE_DIR = $Escpos
$env:ESCPOS_CAPABILITIES_FILE = Join-Path $Escpos "capabilities.json"
& (Join-Path $Venv "Scripts\python.exe") -c "import escpos.capabilities"
Get-ChildItem (Join-Path $Escpos "*.capabilities.pickle") | ForEach-Object { $_.LastWriteTime = Get-Date }
Write-Host "built: $Dist\kopilka-agent"
