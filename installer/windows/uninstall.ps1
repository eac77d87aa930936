<#
.SYNOPSIS
  Removes the Kopilka till agent service. The configuration and the data folder (cache, outbox
  with sales not yet sent, device credential) stay unless -Purge is given. UNTESTED here.
#>
param([switch]$Purge)
$ErrorActionPreference = "Stop"

$Program = Join-Path $env:ProgramFiles "Kopilka Agent"
$State = Join-Path $env:ProgramData "Kopilka\agent"
$Service = Join-Path $Program "kopilka-agent-service.exe"

if (Test-Path $Service) {
    & $Service stop
    & $Service uninstall
}
if (Test-Path $Program) { Remove-Item -Recurse -Force $Program }
Write-Host "removed the program and the service"
if ($Purge) {
    if (Test-Path $State) { Remove-Item -Recurse -Force $State }
    Write-Host "purged the configuration, the data, the logs and the backups"
} else {
    Write-Host "kept $State (install.ps1 uses it again; -Purge deletes it)"
}
