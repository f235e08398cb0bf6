/**
 * The admin page in a real browser: Debian's Chromium driven by playwright-core (no browser is
 * downloaded). Every wait is one of Playwright's auto-waiting assertions with a generous timeout.
 * Skips only when /usr/bin/chromium is missing outside CI; `.ci/run` installs it and sets
 * NDP_REQUIRE_BROWSER, so there it always runs.
 */
import { describe, expect as vitestExpect, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import { existsSync, mkdirSync, mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { chromium, type Locator } from "playwright-core"
import { demoPlugins } from "../../src/cli/DemoPlugins.js"
import { PluginManager } from "../../src/manager/PluginManager.js"
import { repositoryRoot } from "../support/cli.js"
import { makeFolders } from "../support/manager.js"
import { startAdmin, TOKEN } from "./support.js"

const CHROMIUM = "/usr/bin/chromium"
const required = process.env.CI !== undefined || process.env.NDP_REQUIRE_BROWSER === "1"
const available = existsSync(CHROMIUM)
if (!available && !required) {
  console.warn(`admin browser test skipped: ${CHROMIUM} is missing (apt-get install -y chromium to run it)`)
}

/** Where the test leaves its screenshot. */
export const screenshotPath = join(repositoryRoot, "build", "test-artifacts", "admin-page.png")

/** Playwright's own auto-waiting: resolves once the locator matches a visible element. */
const seen = (locator: Locator) => locator.waitFor({ state: "visible", timeout: 60_000 })

describe.skipIf(!available && !required)("admin page in Chromium", () => {
  it.scopedLive(
    "sign in, see the demo plugins, switch one off and on, edit the config, see a bad value refused and a metric move",
    () =>
      Effect.gen(function* () {
        const folders = yield* makeFolders([...demoPlugins, "configurable"])
        const admin = yield* startAdmin(folders)
        const manager = yield* Effect.provide(PluginManager, admin.context)
        yield* manager.enable("agent-full")
        yield* manager.enable("configurable")

        const browser = yield* Effect.acquireRelease(
          Effect.promise(() =>
            chromium.launch({
              executablePath: CHROMIUM,
              headless: true,
              args: [
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                `--disk-cache-dir=${mkdtempSync(join(tmpdir(), "ndp-chromium-"))}`
              ]
            })
          ),
          (b) => Effect.promise(() => b.close())
        )
        yield* Effect.promise(async () => {
          const page = await browser.newPage({ viewport: { width: 1280, height: 900 } })
          page.setDefaultTimeout(60_000)
          await page.goto(`${admin.url}/`)

          // Only the token form until signed in.
          await page.getByLabel("Admin token").fill(TOKEN)
          await page.getByRole("button", { name: "Sign in" }).click()
          for (const id of [...demoPlugins, "configurable"]) {
            await seen(page.locator(`[data-plugin="${id}"]`))
          }

          // Off and on again with the switch, as the manager sees it.
          const agent = page.locator('[data-plugin="agent-full"]')
          const toggle = page.getByRole("switch", { name: "Enabled agent-full" })
          await seen(agent.getByText("loaded", { exact: true }))
          await toggle.click()
          await seen(agent.getByText("disabled", { exact: true }))
          await seen(agent.locator("input[role=switch]:not(:checked)"))
          await toggle.click()
          await seen(agent.getByText("loaded", { exact: true }))
          await seen(agent.locator("input[role=switch]:checked"))

          // The form generated from the schema; a bad value is refused with the field's error.
          await page.getByRole("button", { name: "Details of configurable" }).click()
          await seen(page.getByRole("heading", { name: "configurable 1.2.0" }))
          await page.getByLabel("Retries").fill("99")
          await page.getByRole("button", { name: "Save configuration" }).click()
          await seen(page.locator("#config-retries-error", { hasText: "must be <= 10" }))
          await page.getByLabel("Retries").fill("3")
          await page.getByLabel("Mode").selectOption({ label: "thorough" })
          await page.getByLabel("API key").fill("secret-key")
          await page.getByRole("button", { name: "Save configuration" }).click()
          await seen(page.getByRole("status").filter({ hasText: "configuration of configurable saved" }))

          // A call made from the page moves the call counter by exactly one each time.
          const callsRow = page.getByRole("row", { name: /ndp_plugin_calls_total export=ping/ })
          const before = Number(
            (
              await await fetch(`${admin.url}/api/metrics?plugin=configurable`, {
                headers: { authorization: `Bearer ${TOKEN}` }
              }).then(
                (r) =>
                  r.json() as Promise<Array<{ name: string; tags: Record<string, string>; value: number }>>
              )
            ).find((m) => m.name === "ndp_plugin_calls_total" && m.tags.export === "ping")?.value ?? 0
          )
          await page.getByLabel("Export", { exact: true }).fill("ping")
          await page.getByRole("button", { name: "Call", exact: true }).click()
          await seen(page.getByLabel("Call output").filter({ hasText: "(no output)" }))
          await seen(callsRow.locator("td", { hasText: new RegExp(`^${before + 1}$`) }))
          await page.getByRole("button", { name: "Call", exact: true }).click()
          await seen(callsRow.locator("td", { hasText: new RegExp(`^${before + 2}$`) }))
          await page.getByRole("button", { name: "Refresh logs" }).click()
          await seen(page.getByLabel("Recent logs of configurable").filter({ hasText: "pinged" }))

          mkdirSync(join(repositoryRoot, "build", "test-artifacts"), { recursive: true })
          await page.screenshot({ path: screenshotPath, fullPage: true })
        })

        // What the page did went through the manager: the registry holds it.
        const status = yield* manager.get("configurable")
        vitestExpect(status.config).toEqual({
          retries: 3,
          mode: "thorough",
          apiKey: "secret-key",
          verbose: false
        })
        vitestExpect((yield* manager.get("agent-full")).loaded).toBe(true)
        vitestExpect(existsSync(screenshotPath)).toBe(true)
      }),
    300_000
  )
})
