<#
.SYNOPSIS
  Installs or upgrades the Kopilka till agent as a Windows service (WinSW). UNTESTED here: no
  Windows machine builds or runs it in the project's CI; see docs/install.md.

.EXAMPLE
  .\install.ps1 -WinSW .\WinSW-x64.exe                 # first install, example configuration
  .\install.ps1 -WinSW .\WinSW-x64.exe -Config .\agent.toml
  .\install.ps1 -Upgrade                               # new build; data and configuration kept
#>
param(
    [string]$Bundle = (Join-Path $PSScriptRoot "kopilka-agent"),
    [string]$WinSW = (Join-Path $PSScriptRoot "WinSW-x64.exe"),
    [string]$Config = "",
    [switch]$Upgrade
)
$ErrorActionPreference = "Stop"

$Program = Join-Path $env:ProgramFiles "Kopilka Agent"
$State = Join-Path $env:ProgramData "Kopilka\agent"
$Data = Join-Path $State "data"
$Logs = Join-Path $State "logs"
$Backups = Join-Path $State "backups"
$Service = Join-Path $Program "kopilka-agent-service.exe"
$ServiceAccount = "NT AUTHORITY\LocalService"

$principal = [Security.Principal.WindowsPrincipal][Security.Principal.WindowsIdentity]::GetCurrent()
if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
    throw "run from an elevated PowerShell (as Administrator)"
}
$exe = Join-Path $Bundle "kopilka-agent.exe"
$banner = & $exe --version
if ($LASTEXITCODE -ne 0) { throw "$exe does not run on this machine" }
Write-Host "build: $banner"

$installed = Test-Path (Join-Path $Program "kopilka-agent")
if ($installed -and -not $Upgrade) { throw "already installed in $Program; use -Upgrade" }
if ($Upgrade -and -not $installed) { throw "not installed in $Program; run without -Upgrade" }

if ($Upgrade) {
    & $Service stop
    # A copy of the data folder taken while the agent is stopped.
    $stamp = (Get-Date).ToUniversalTime().ToString("yyyyMMddTHHmmssZ")
    New-Item -ItemType Directory -Force $Backups | Out-Null
    Copy-Item -Recurse $Data (Join-Path $Backups $stamp)
    Write-Host "data copied to $Backups\$stamp"
    $previous = Join-Path $Program "kopilka-agent.previous"
    if (Test-Path $previous) { Remove-Item -Recurse -Force $previous }
    Move-Item (Join-Path $Program "kopilka-agent") $previous
}

New-Item -ItemType Directory -Force $Program, $State, $Data, $Logs | Out-Null
Copy-Item -Recurse $Bundle (Join-Path $Program "kopilka-agent")
if (-not $Upgrade) {
    Copy-Item $WinSW $Service
}
Copy-Item (Join-Path $PSScriptRoot "kopilka-agent-service.xml") (Join-Path $Program "kopilka-agent-service.xml") -Force

$configPath = Join-Path $State "agent.toml"
if ($Config) {
    Copy-Item $Config $configPath -Force
} elseif (-not (Test-Path $configPath)) {
    @"
# Kopilka till agent. Every key: docs/install.md.
data_dir = '$Data'
listen_host = "127.0.0.1"
listen_port = 8765

[store]
store_id = "store-1"
name = "Store 1"
"@ | Set-Content -Encoding utf8 $configPath
    Write-Host "edit $configPath (store, printers, scanners), then: Start-Service kopilka-agent"
}

# The data folder (cache, outbox, device credential, keys): the service account, SYSTEM and
# administrators only.
icacls $Data /inheritance:r /grant:r "${ServiceAccount}:(OI)(CI)M" "SYSTEM:(OI)(CI)F" "Administrators:(OI)(CI)F" | Out-Null
icacls $Logs /grant "${ServiceAccount}:(OI)(CI)M" | Out-Null

if (-not $Upgrade) {
    & $Service install
}
if ($Upgrade -or $Config) {
    & $Service start
    Start-Sleep -Seconds 5
    $status = & $Service status
    Write-Host "service: $status"
    if ($status -notmatch "Started|Active") {
        throw "the agent did not stay up; see $Logs. The previous build is in $Program\kopilka-agent.previous"
    }
}
Write-Host "done: $banner"
