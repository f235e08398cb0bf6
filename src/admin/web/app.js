// The admin page: plain DOM, no framework, no network beyond this server's API (relative URLs, so
// the page works wherever the module is mounted). Text from the server is only ever set as text.
const TOKEN_KEY = "ndp-admin-token"
const $ = (id) => document.getElementById(id)
let selected = null

/** Builds an element; children are nodes or strings (set as text). */
const h = (tag, attrs = {}, ...children) => {
  const el = document.createElement(tag)
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value)
    else if (value === true) el.setAttribute(key, "")
    else el.setAttribute(key, String(value))
  }
  for (const child of children.flat()) if (child !== null && child !== undefined) el.append(child)
  return el
}

const say = (text, isError = false) => {
  const status = $("status")
  status.textContent = text
  status.className = isError ? "error" : ""
}

class ApiError extends Error {
  constructor(status, body) {
    super(body?.message ?? `request failed (${status})`)
    this.status = status
    this.body = body
  }
}

const api = async (path, { method = "GET", body } = {}) => {
  const response = await fetch(path, {
    method,
    headers: {
      authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY) ?? ""}`,
      ...(body === undefined ? {} : { "content-type": "application/json" })
    },
    body: body === undefined ? undefined : JSON.stringify(body)
  })
  const parsed = await response.json().catch(() => null)
  if (response.status === 401) {
    signOut("The token was refused; enter the admin token.")
    throw new ApiError(401, parsed)
  }
  if (!response.ok) throw new ApiError(response.status, parsed)
  return parsed
}

const describeError = (error) => {
  const body = error.body
  if (body?.issues && body._tag === "InvalidConfig") return body.message
  if (body?.issues)
    return `invalid request: ${body.issues.map((i) => `${(i.path ?? []).join(".")}: ${i.message}`).join("; ")}`
  return error.message
}

const signOut = (message) => {
  sessionStorage.removeItem(TOKEN_KEY)
  $("app").hidden = true
  $("login").hidden = false
  $("token").focus()
  if (message) say(message, true)
}

const accessText = (list) => (list === "all" ? "all" : list.length === 0 ? "none" : list.join(", "))

// ---- list ----

const renderList = (plugins) => {
  const list = $("plugins")
  list.replaceChildren(
    ...plugins.map((p) =>
      h(
        "li",
        { class: `plugin${p.id === selected ? " selected" : ""}`, "data-plugin": p.id },
        h(
          "div",
          {},
          h(
            "button",
            {
              type: "button",
              class: "name",
              onclick: () => select(p.id),
              "aria-label": `Details of ${p.id}`
            },
            p.name
          ),
          " ",
          h("span", { class: "meta" }, `${p.id} · ${p.version || "?"}`),
          h(
            "div",
            { class: "meta" },
            h("span", { class: `badge state-${p.state}` }, p.state),
            ...p.capabilities.map((c) => h("span", { class: "badge" }, c)),
            p.lastError ? h("span", { class: "error-text" }, ` last error: ${p.lastError}`) : null
          )
        ),
        h(
          "label",
          { class: "switch" },
          h("input", {
            type: "checkbox",
            role: "switch",
            "aria-label": `Enabled ${p.id}`,
            checked: p.enabled,
            onchange: (event) => toggle(p.id, event.target.checked)
          }),
          "Enabled"
        )
      )
    )
  )
}

const refresh = async () => {
  const plugins = await api("api/plugins")
  renderList(plugins)
  if (selected !== null && plugins.some((p) => p.id === selected)) await renderDetail(selected)
  return plugins
}

const toggle = async (id, on) => {
  try {
    await api(`api/plugins/${encodeURIComponent(id)}/${on ? "enable" : "disable"}`, {
      method: "POST",
      body: on ? {} : undefined
    })
    say(`${id} ${on ? "enabled" : "disabled"}`)
  } catch (error) {
    say(`${id}: ${describeError(error)}`, true)
  }
  await refresh().catch(() => {})
}

const select = async (id) => {
  selected = id
  await refresh().catch((error) => say(describeError(error), true))
  $("detail").querySelector("h2")?.focus()
}

// ---- detail ----

const section = (title, ...content) => h("section", {}, h("h3", {}, title), ...content)

const permissionsView = (p) =>
  p.permissions.length === 0
    ? h("p", {}, "No permissions requested.")
    : h(
        "ul",
        {},
        ...p.permissions.map((perm) =>
          h(
            "li",
            {},
            h("strong", {}, perm.name),
            perm.reason ? `: ${perm.reason}` : "",
            Object.keys(perm.details).length > 0
              ? h("span", { class: "meta" }, ` (${JSON.stringify(perm.details)})`)
              : null
          )
        )
      )

const grantsForm = (p) => {
  const listInput = (name, label, value, hint) =>
    h(
      "div",
      { class: "field" },
      h("label", { for: `grant-${name}` }, label),
      h("input", {
        id: `grant-${name}`,
        name,
        value: value === "all" ? "all" : value.join(", "),
        "aria-describedby": `grant-${name}-help`
      }),
      h("span", { class: "help", id: `grant-${name}-help` }, hint)
    )
  const split = (text) =>
    text
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s !== "")
  return h(
    "form",
    {
      novalidate: true,
      onsubmit: async (event) => {
        event.preventDefault()
        const form = new FormData(event.target)
        const users = String(form.get("users")).trim()
        const libraries = String(form.get("libraries")).trim()
        try {
          await api(`api/plugins/${encodeURIComponent(p.id)}/grants`, {
            method: "PUT",
            body: {
              users: users === "all" ? "all" : split(users),
              libraries: libraries === "all" ? "all" : split(libraries).map(Number),
              networks: split(String(form.get("networks")))
            }
          })
          say(`grants of ${p.id} saved`)
          await refresh()
        } catch (error) {
          say(`${p.id}: ${describeError(error)}`, true)
        }
      }
    },
    listInput("users", "Users", p.users, "User names, comma separated, or all"),
    listInput("libraries", "Libraries", p.libraries, "Library IDs, comma separated, or all"),
    listInput("networks", "Networks", p.networks, "CIDR blocks, addresses or host names, comma separated"),
    h("button", { type: "submit" }, "Save grants")
  )
}

/** A form generated from the manifest's JSON Schema, arranged by its uiSchema when there is one. */
const configForm = (detail) => {
  const schema = detail.configSchema ?? {}
  const ui = detail.uiSchema ?? {}
  const properties = schema.properties ?? {}
  const order = Array.isArray(ui["ui:order"]) ? ui["ui:order"].filter((k) => k in properties) : []
  const keys = [...order, ...Object.keys(properties).filter((k) => !order.includes(k))]
  const required = new Set(schema.required ?? [])
  const fields = keys.map((key) => {
    const prop = properties[key] ?? {}
    const hints = ui[key] ?? {}
    const id = `config-${key}`
    const value = detail.config[key]
    const label = prop.title ?? key
    const help = hints["ui:help"] ?? prop.description
    const described = [help ? `${id}-help` : null, `${id}-error`].filter(Boolean).join(" ")
    const common = { id, name: key, "data-type": prop.type ?? "json", "aria-describedby": described }
    let input
    if (Array.isArray(prop.enum)) {
      input = h(
        "select",
        common,
        h("option", { value: "" }, "(not set)"),
        ...prop.enum.map((option) =>
          h("option", { value: JSON.stringify(option), selected: option === value }, String(option))
        )
      )
    } else if (prop.type === "boolean") {
      input = h("input", { ...common, type: "checkbox", checked: value === true })
    } else if (prop.type === "integer" || prop.type === "number") {
      input = h("input", {
        ...common,
        type: "number",
        step: prop.type === "integer" ? "1" : "any",
        value: value ?? ""
      })
    } else if (prop.type === "string") {
      const widget = hints["ui:widget"]
      input =
        widget === "textarea"
          ? h("textarea", common, value ?? "")
          : h("input", {
              ...common,
              type: widget === "password" ? "password" : "text",
              value: value ?? "",
              autocomplete: "off"
            })
    } else {
      input = h(
        "textarea",
        { ...common, "data-type": "json" },
        value === undefined ? "" : JSON.stringify(value)
      )
    }
    return h(
      "div",
      { class: `field${prop.type === "boolean" ? " check" : ""}` },
      prop.type === "boolean" ? input : null,
      h("label", { for: id }, label, required.has(key) ? " (required)" : ""),
      prop.type === "boolean" ? null : input,
      help ? h("span", { class: "help", id: `${id}-help` }, help) : null,
      h("span", { class: "error", id: `${id}-error`, "data-error-for": key })
    )
  })
  const readField = (el) => {
    const type = el.getAttribute("data-type")
    if (el.tagName === "SELECT") return el.value === "" ? undefined : JSON.parse(el.value)
    if (type === "boolean") return el.checked
    if (el.value.trim() === "") return undefined
    if (type === "integer" || type === "number") return Number(el.value)
    if (type === "string") return el.value
    try {
      return JSON.parse(el.value)
    } catch {
      return el.value
    }
  }
  const form = h(
    "form",
    {
      novalidate: true,
      onsubmit: async (event) => {
        event.preventDefault()
        for (const el of form.querySelectorAll("[data-error-for]")) el.textContent = ""
        const set = {}
        const unset = []
        for (const key of keys) {
          const value = readField(form.elements.namedItem(key))
          if (value === undefined) unset.push(key)
          else set[key] = value
        }
        try {
          await api(`api/plugins/${encodeURIComponent(detail.id)}/config`, {
            method: "PATCH",
            body: { set, unset }
          })
          say(`configuration of ${detail.id} saved`)
          await refresh()
        } catch (error) {
          for (const issue of error.body?.issues ?? []) {
            const key = typeof issue.path === "string" ? issue.path.split(/[./[]/)[0] : ""
            const target = form.querySelector(`[data-error-for="${CSS.escape(key)}"]`)
            if (target) target.textContent = issue.message
          }
          say(`${detail.id}: ${describeError(error)}`, true)
          form.querySelector("[data-error-for]:not(:empty)")?.previousElementSibling?.focus()
        }
      }
    },
    ...fields,
    h("button", { type: "submit", class: "primary" }, "Save configuration")
  )
  return keys.length === 0 ? h("p", {}, "This plugin declares no configurable fields.") : form
}

const logsView = (id) => {
  const list = h("ol", { class: "logs", "aria-label": `Recent logs of ${id}` })
  const level = h(
    "select",
    { id: "log-level", onchange: () => load() },
    ...["trace", "debug", "info", "warning", "error"].map((l) =>
      h("option", { value: l, selected: l === "info" }, l)
    )
  )
  const load = async () => {
    try {
      const entries = await api(`api/plugins/${encodeURIComponent(id)}/logs?level=${level.value}&limit=200`)
      list.replaceChildren(
        ...(entries.length === 0
          ? [h("li", {}, "(nothing logged yet)")]
          : entries.map((e) =>
              h("li", { class: e.level }, `${e.time.slice(11, 19)} ${e.level.toUpperCase()} ${e.message}`)
            ))
      )
    } catch (error) {
      say(describeError(error), true)
    }
  }
  void load()
  return h(
    "div",
    {},
    h("label", { for: "log-level" }, "Level "),
    level,
    " ",
    h("button", { type: "button", onclick: () => load() }, "Refresh logs"),
    list
  )
}

const metricLabel = (m) => {
  const tags = Object.entries(m.tags).filter(([k]) => k !== "plugin")
  return `${m.name}${tags.length ? ` ${tags.map(([k, v]) => `${k}=${v}`).join(" ")}` : ""}`
}

const metricsView = (id) => {
  const body = h("tbody")
  const load = async () => {
    const samples = await api(`api/metrics?plugin=${encodeURIComponent(id)}`)
    body.replaceChildren(
      ...(samples.length === 0
        ? [h("tr", {}, h("td", { colspan: 2 }, "(no calls yet)"))]
        : samples.map((m) =>
            h(
              "tr",
              {},
              h("th", { scope: "row" }, metricLabel(m)),
              h(
                "td",
                { class: "num" },
                m.type === "histogram"
                  ? `${m.count} calls, ${(m.value * 1000).toFixed(1)} ms total`
                  : String(m.value)
              )
            )
          ))
    )
  }
  void load().catch((error) => say(describeError(error), true))
  return {
    node: h(
      "div",
      {},
      h(
        "table",
        { "aria-label": `Metrics of ${id}` },
        h("thead", {}, h("tr", {}, h("th", {}, "Metric"), h("th", {}, "Value"))),
        body
      ),
      h("button", { type: "button", onclick: () => load() }, "Refresh metrics")
    ),
    load
  }
}

const tryView = (p, metrics) => {
  const output = h("pre", { class: "output", "aria-live": "polite", "aria-label": "Call output" })
  return h(
    "form",
    {
      novalidate: true,
      onsubmit: async (event) => {
        event.preventDefault()
        const form = new FormData(event.target)
        try {
          const result = await api(`api/plugins/${encodeURIComponent(p.id)}/call`, {
            method: "POST",
            body: { export: String(form.get("export")), input: String(form.get("input")) }
          })
          output.textContent = `${result.output ?? "(no output)"}${result.truncated ? "\n(cut)" : ""}\n— ${result.durationMs} ms`
        } catch (error) {
          output.textContent = `failed: ${describeError(error)}`
        }
        await metrics.load().catch(() => {})
      }
    },
    h(
      "div",
      { class: "field" },
      h("label", { for: "call-export" }, "Export"),
      h("input", { id: "call-export", name: "export", required: true })
    ),
    h(
      "div",
      { class: "field" },
      h("label", { for: "call-input" }, "Input"),
      h("textarea", { id: "call-input", name: "input", rows: 2 })
    ),
    h("button", { type: "submit" }, "Call"),
    output
  )
}

const renderDetail = async (id) => {
  const detail = await api(`api/plugins/${encodeURIComponent(id)}`)
  const metrics = metricsView(id)
  $("detail").replaceChildren(
    h("h2", { tabindex: -1 }, `${detail.name} ${detail.version}`),
    h(
      "p",
      { class: "meta" },
      `${detail.description} — by ${detail.author}. SHA-256 ${detail.sha256.slice(0, 16)}…`
    ),
    h(
      "div",
      { class: "columns" },
      h(
        "div",
        {},
        section("Permissions", permissionsView(detail)),
        section(
          "Grants",
          h(
            "p",
            { class: "meta" },
            `Users: ${accessText(detail.users)} · Libraries: ${accessText(detail.libraries)} · Networks: ${accessText(detail.networks)}`
          ),
          grantsForm(detail)
        ),
        section("Configuration", configForm(detail))
      ),
      h(
        "div",
        {},
        section("Metrics", metrics.node),
        section("Try an export", tryView(detail, metrics)),
        section("Recent logs", logsView(id))
      )
    )
  )
}

// ---- start ----

$("login").addEventListener("submit", async (event) => {
  event.preventDefault()
  sessionStorage.setItem(TOKEN_KEY, $("token").value)
  $("token").value = ""
  await start()
})
$("signout").addEventListener("click", () => signOut("Signed out."))
$("refresh").addEventListener("click", () =>
  refresh().then(
    () => say("refreshed"),
    (e) => say(describeError(e), true)
  )
)
$("rescan").addEventListener("click", async () => {
  try {
    renderList(await api("api/rescan", { method: "POST" }))
    say("folder rescanned")
  } catch (error) {
    say(describeError(error), true)
  }
})

const start = async () => {
  if (!sessionStorage.getItem(TOKEN_KEY)) return signOut()
  try {
    const plugins = await refresh()
    $("login").hidden = true
    $("app").hidden = false
    say(`${plugins.length} plugins`)
  } catch (error) {
    if (error.status !== 401) say(describeError(error), true)
  }
}
void start()
