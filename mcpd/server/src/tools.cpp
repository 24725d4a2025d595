#include "tools.h"

#include <algorithm>

#include "answer_budget.h"
#include "keys.h"
#include "text.h"

namespace sluice::mcpd {
namespace {

constexpr char kEntityScheme[] = "sluice://entities/";
constexpr char kSavedScheme[] = "sluice://saved-queries/";

nlohmann::json object_schema(nlohmann::json properties, std::vector<std::string> required) {
  nlohmann::json s = {{"type", "object"}, {"properties", std::move(properties)},
                      {"additionalProperties", false}};
  if (!required.empty()) s["required"] = required;
  return s;
}

ToolOutcome failure(const DataError& e) {
  ToolOutcome o;
  o.result = text_result(e.message, true);
  switch (e.kind) {
    case DataError::Kind::denied: o.status = "denied"; break;
    case DataError::Kind::timeout: o.status = "timeout"; break;
    case DataError::Kind::cancelled: o.status = "cancelled"; break;
    default: o.status = "error"; break;
  }
  o.detail = e.detail.empty() ? e.message : e.detail;
  return o;
}

// A successful result: the body (JSON text) as text and as structured content.
ToolOutcome answer_text(std::string body, std::int64_t rows) {
  ToolOutcome o;
  o.body = std::move(body);
  o.rows = rows;
  return o;
}

ToolOutcome answer(const nlohmann::json& body, std::int64_t rows) { return answer_text(to_text(body), rows); }

// A query's answer as JSON text (columns, row_count, rows, truncated),
// written directly: it is the one per-call payload whose size the caller
// controls, and it is sent twice (as text and as structured content).
std::string query_text(const QueryResult& r) {
  std::string out;
  JsonObject o(out);
  std::string& columns = o.value("columns");
  columns += '[';
  for (std::size_t i = 0; i < r.columns.size(); ++i) {
    if (i) columns += ',';
    append_json_string(columns, r.columns[i]);
  }
  columns += ']';
  o.num("row_count", static_cast<std::int64_t>(r.rows.size()));
  std::string& rows = o.value("rows");
  rows += '[';
  for (std::size_t i = 0; i < r.rows.size(); ++i) {
    if (i) rows += ',';
    rows += to_text(r.rows[i]);
  }
  rows += ']';
  o.boolean("truncated", r.truncated);
  o.close();
  return out;
}

ToolOutcome bad_arguments(const std::string& why) {
  ToolOutcome o;
  o.result = text_result("invalid arguments: " + why, true);
  o.status = "error";
  o.detail = why;
  return o;
}

nlohmann::json entity_json(const EntityInfo& e) {
  nlohmann::json cols = nlohmann::json::array();
  for (const Column& c : e.columns) {
    cols.push_back({{"name", c.name}, {"type", c.type}, {"not_null", c.not_null},
                    {"primary_key", c.primary_key}});
  }
  return {{"name", e.name}, {"kind", e.kind}, {"columns", cols}};
}

nlohmann::json stats_json(const EntityStats& s) {
  nlohmann::json out = entity_json(s.info);
  out["row_count"] = s.row_count;
  out["approximate"] = s.approximate;
  nlohmann::json cols = nlohmann::json::array();
  for (const ColumnStats& c : s.columns) {
    cols.push_back({{"name", c.column.name}, {"type", c.column.type},
                    {"null_fraction", c.null_fraction}, {"distinct_count", c.distinct_count}});
  }
  out["column_stats"] = cols;
  return out;
}

// One statement on the caller's data source, parameters bound.
ToolOutcome run_sql(Sources& sources, const Principal& p, const std::string& sql,
                    const std::vector<nlohmann::json>& params) {
  auto src = sources.of(p.tenant_id);
  if (!src) return failure(src.error());
  auto r = (*src)->query(sql, params);
  if (!r) return failure(r.error());
  return answer_text(query_text(*r), static_cast<std::int64_t>(r->rows.size()));
}

// A saved query's parameters, from the caller's object, in declared order
// and of declared types. Bound, never spliced.
std::variant<std::string, std::vector<nlohmann::json>> bind_saved(const SavedQuery& q,
                                                                  const nlohmann::json& given) {
  if (!given.is_object()) return std::string("\"params\" must be an object");
  for (const auto& [k, v] : given.items()) {
    bool declared = false;
    for (const SavedParam& p : q.params) declared = declared || p.name == k;
    if (!declared) {
      // The caller's name is not repeated: the message reaches the audit
      // record, which keeps a call's arguments only as a digest.
      std::string names;
      for (const SavedParam& p : q.params) names += (names.empty() ? "\"" : ", \"") + p.name + "\"";
      return "unknown parameter: the query declares " + (names.empty() ? std::string("none") : names);
    }
  }
  std::vector<nlohmann::json> out;
  for (const SavedParam& p : q.params) {
    auto it = given.find(p.name);
    if (it == given.end()) return "missing parameter \"" + p.name + "\"";
    const nlohmann::json& v = *it;
    const bool ok = (p.type == "string" && v.is_string()) ||
                    (p.type == "integer" && v.is_number_integer()) ||
                    (p.type == "number" && v.is_number()) || (p.type == "boolean" && v.is_boolean());
    if (!ok) return "parameter \"" + p.name + "\" must be of type " + p.type;
    out.push_back(v);
  }
  return out;
}

}  // namespace

std::string result_text(const ToolOutcome& outcome, bool structured) {
  if (outcome.body.empty()) {
    if (structured || !outcome.result.contains("structuredContent")) return to_text(outcome.result);
    nlohmann::json plain = outcome.result;
    plain.erase("structuredContent");
    return to_text(plain);
  }
  // text_result(body, false, body), without parsing the body back.
  std::string out;
  out.reserve(2 * outcome.body.size() + 96);
  out += R"({"content":[{"type":"text","text":)";
  append_json_string(out, outcome.body);
  out += R"(}],"isError":false)";
  if (structured) {
    out += R"(,"structuredContent":)";
    out += outcome.body;
  }
  out += '}';
  return out;
}

nlohmann::json text_result(const std::string& text, bool is_error, const nlohmann::json& structured) {
  nlohmann::json r = {{"content", {{{"type", "text"}, {"text", text}}}}, {"isError", is_error}};
  if (!structured.is_null()) r["structuredContent"] = structured;
  return r;
}

ToolOutcome internal_error(const std::string& detail) {
  ToolOutcome o;
  o.result = text_result("internal error", true);
  o.status = "error";
  o.detail = clean_text(detail, 256);
  return o;
}

void Sources::release_idle(std::uint64_t idle_calls) {
  const std::lock_guard one(release_mu_);
  const std::uint64_t round = round_.fetch_add(1, std::memory_order_relaxed) + 1;
  std::vector<std::shared_ptr<Slot>> slots;
  {
    std::lock_guard lock(mu_);
    for (auto& [tenant, slot] : slots_) slots.push_back(slot);
  }
  const auto drop_retired = [](Slot& slot) {
    std::lock_guard lock(slot.source_mu);
    if (slot.source && slot.source->retired()) slot.source.reset();  // closed as its last call ends
  };
  for (auto& slot : slots) {
    {
      // A schema grown in place is found here too, if no call came to look.
      std::shared_ptr<SqliteSource> source;
      {
        std::lock_guard lock(slot->source_mu);
        source = slot->source;
      }
      if (source) source->measure_schema();
    }
    drop_retired(*slot);
    const std::uint64_t used = slot->used_in.load(std::memory_order_relaxed);
    // Used since its last release (or never released), and idle long enough.
    if (slot->released_in > used || round - used < idle_calls) continue;
    std::shared_ptr<SqliteSource> source;
    {
      std::lock_guard lock(slot->source_mu);
      source = slot->source;
    }
    if (source) source->release_memory();
    slot->released_in = round;
  }
  // Schemas grown in place past the budget of all: the largest goes (its
  // tenant's next call opens it again, refused while it does not fit).
  while (true) {
    std::size_t total = 0, largest = 0;
    Slot* biggest = nullptr;
    std::shared_ptr<SqliteSource> its;
    for (auto& slot : slots) {
      std::lock_guard lock(slot->source_mu);
      if (!slot->source) continue;
      const std::size_t f = slot->source->schema_footprint();
      total = total > SIZE_MAX - f ? SIZE_MAX : total + f;
      if (f > largest) largest = f, biggest = slot.get(), its = slot->source;
    }
    if (total <= schema_budget_ || !biggest) break;
    std::lock_guard lock(biggest->source_mu);
    its->retire();
    // Only the source measured: one opened meanwhile in its place was
    // admitted against the budget as it stands now.
    if (biggest->source == its) biggest->source.reset();
  }
}

bool Sources::make_room(std::int64_t tenant_id, std::size_t needed) {
  const std::size_t room = schema_budget_ - needed;  // (needed <= the budget: checked by the caller)
  std::size_t held = schemas_held(tenant_id);
  if (held <= room) return true;
  std::vector<std::pair<std::int64_t, std::shared_ptr<Slot>>> slots;
  {
    std::lock_guard lock(mu_);
    slots.assign(slots_.begin(), slots_.end());
  }
  // Not handed out since the last sweep began, least recently used first;
  // and only if closing them all would make the room (else none closes).
  const std::uint64_t round = round_.load(std::memory_order_relaxed);
  struct Idle {
    std::uint64_t used;
    std::shared_ptr<Slot> slot;
  };
  std::vector<Idle> idle;
  std::size_t freeable = 0;
  for (const auto& [id, slot] : slots) {
    const std::uint64_t used = slot->used_in.load(std::memory_order_relaxed);
    if (id == tenant_id || used >= round) continue;
    std::lock_guard lock(slot->source_mu);
    if (!slot->source) continue;
    const std::size_t f = slot->source->schema_footprint();
    idle.push_back({used, slot});
    freeable = freeable > SIZE_MAX - f ? SIZE_MAX : freeable + f;
  }
  if (held - std::min(held, freeable) > room) return false;
  std::sort(idle.begin(), idle.end(), [](const Idle& a, const Idle& b) { return a.used < b.used; });
  for (const Idle& i : idle) {
    if (held <= room) break;
    std::lock_guard lock(i.slot->source_mu);
    // Handed out meanwhile (of() marks the round before it takes the
    // source, under this lock): in use again, kept.
    if (!i.slot->source || i.slot->used_in.load(std::memory_order_relaxed) >= round) continue;
    held -= std::min(held, i.slot->source->schema_footprint());
    i.slot->source.reset();  // opened again at its next call (its statistics computed again)
  }
  return held <= room;
}

std::size_t Sources::schemas_held(std::int64_t except) {
  std::vector<std::pair<std::int64_t, std::shared_ptr<Slot>>> slots;
  {
    std::lock_guard lock(mu_);
    slots.assign(slots_.begin(), slots_.end());
  }
  std::size_t total = 0;
  for (const auto& [id, slot] : slots) {
    if (id == except) continue;
    std::lock_guard lock(slot->source_mu);
    if (!slot->source) continue;
    const std::size_t f = slot->source->schema_footprint();
    total = total > SIZE_MAX - f ? SIZE_MAX : total + f;
  }
  return total;
}

ToolOutcome answer_not_kept(std::size_t bytes, const ToolOutcome& ran) {
  ToolOutcome o;
  o.result = text_result(kAnswersFull, true);
  o.status = "busy";
  o.detail = "ended " + ran.status + " with " + std::to_string(ran.rows) + " rows, but its answer of " +
             std::to_string(bytes) + " bytes was past the answer budget: not returned";
  return o;
}

DataResult<std::shared_ptr<SqliteSource>> Sources::of(std::int64_t tenant_id) {
  std::shared_ptr<Slot> slot;
  {
    std::lock_guard lock(mu_);
    auto& s = slots_[tenant_id];
    if (!s) s = std::make_shared<Slot>();
    slot = s;
  }
  // Written only when the round moved: every call of a busy tenant would
  // otherwise write the same line from every worker.
  if (const auto round = round_.load(std::memory_order_relaxed); slot->used_in.load(std::memory_order_relaxed) != round) {
    slot->used_in.store(round, std::memory_order_relaxed);
  }
  const auto current = [&] {
    std::lock_guard lock(slot->source_mu);
    return slot->source;
  };
  using Path = SqliteSource::PathState;
  if (auto s = current(); s && s->path_state() == Path::same) return s;
  std::unique_lock lock(slot->mu, std::defer_lock);
  if (auto s = current()) {
    // A new export renamed over the file: one caller opens it; the others,
    // and this one until that succeeds, go on with the old one (a
    // consistent file still).
    if (!lock.try_lock()) return s;
  } else if (!lock.try_lock_for(limits_.timeout)) {
    return tl::unexpected(DataError{DataError::Kind::timeout, "data source busy", "still being opened for another call"});
  }
  const auto now = std::chrono::steady_clock::now();
  const bool remembered = slot->failed && now - slot->failed_at < slot->failed_for;
  if (auto s = current()) {
    // While a replacement that did not open is remembered, the old file
    // answers; unless there is no file at all any more.
    const Path path = s->path_state();
    if (path == Path::same || (remembered && path == Path::other)) return s;
  } else if (remembered) {
    return tl::unexpected(*slot->failed);
  }
  auto tenant = store_.tenant(tenant_id);
  if (!tenant || !*tenant) {
    return tl::unexpected(DataError{DataError::Kind::not_found, "no data source for this tenant",
                                    tenant ? "tenant gone" : tenant.error().what});
  }
  // A file that does not open, or is not the tenant's, is remembered for
  // `remember`; the old file, if there is one (a consistent file still),
  // answers meanwhile. The path is the operator's, not the caller's business.
  const auto refuse = [&](std::string detail, std::chrono::milliseconds remember) -> DataResult<std::shared_ptr<SqliteSource>> {
    slot->failed = DataError{DataError::Kind::internal, "the data source is unavailable", std::move(detail)};
    slot->failed_at = std::chrono::steady_clock::now();
    slot->failed_for = remember;
    if (auto s = current()) return s;
    return tl::unexpected(*slot->failed);
  };
  // Opening is for every caller of the tenant, not cut short by this one's cancellation.
  const CancelScope uncancellable(nullptr);
  // (A path that leads to mcpd's own database fails here: kMcpdApplicationId.)
  auto src = SqliteSource::open((*tenant)->data_source, limits_);
  if (auto old = current(); old && old->retired()) {
    // Its schema grew in place past what may be held: it answers no more,
    // whatever became of this opening.
    std::lock_guard drop(slot->source_mu);
    slot->source.reset();
  }
  if (!src && src.error().kind == DataError::Kind::not_found) {
    // Deleted: the old file answers no more. Looked for again as often as
    // a path is (a file put back, as by rm then cp, is served within that),
    // not after the longer wait that other failures get.
    {
      std::lock_guard drop(slot->source_mu);
      slot->source.reset();
    }
    return refuse(src.error().detail, std::min(remember_failure_, limits_.schema_check_interval));
  }
  if (!src) return refuse(src.error().detail, remember_failure_);
  // Whose file it is. A tenant's path names a file in its own directory
  // (a link there may lead only to a file beside it: not to another
  // tenant's next export or backup), and no other tenant's: by a link or
  // a second path, that tenant's rows, never this one's. The other tenant
  // is not named: this detail reaches the tenant's own audit records
  // (`sluicectl tenant list` tells the operator).
  std::optional<std::string> refused;
  if (SqliteSource::file_within_directory((*tenant)->data_source) != (*src)->file()) {
    refused = "is not a file in its own directory (a link leads out of it, or it changed while opened)";
  }
  if (!refused) refused = named_elsewhere(tenant_id, (*src)->file());
  // Checked against the others' open files and taken under one lock: two
  // tenants opening the same file at once cannot both pass.
  std::unique_lock claim(claim_mu_);
  if (!refused) refused = open_elsewhere(tenant_id, (*src)->file());
  // The schemas all open sources hold in SQLite's heap (every tenant's,
  // and the audit log's): this one's may not take them past the budget.
  // (Under claim_mu_: two openings at once cannot both take the last room.)
  if (!refused) {
    const std::size_t mine = (*src)->schema_footprint();
    // Past the budget: idle tenants' sources close first (they open again
    // when called), never one a call has used since the last sweep began.
    if (mine > schema_budget_ || !make_room(tenant_id, mine)) {
      const std::size_t others = schemas_held(tenant_id);
      refused = "has a schema that would take " + std::to_string(mine >> 20) + " MiB of memory (" +
                std::to_string(mine / (*src)->limits().pool >> 20) + " MiB per connection), where the schemas of " +
                "the open data sources hold " + std::to_string(others >> 20) + " MiB of at most " +
                std::to_string(schema_budget_ >> 20) + " MiB";
    }
  }
  if (refused) {
    claim.unlock();
    return refuse("the file at " + (*tenant)->data_source + " " + *refused + ": refused", remember_failure_);
  }
  slot->failed.reset();
  std::shared_ptr<SqliteSource> opened = std::move(*src);
  std::lock_guard set(slot->source_mu);
  // In use from now: another opening's make_room does not count it idle,
  // however long this one took.
  slot->used_in.store(round_.load(std::memory_order_relaxed), std::memory_order_relaxed);
  slot->source = opened;
  return opened;
}

namespace {
constexpr char kShared[] = "is also another tenant's data source (refused to either, at its next opening)";
}  // namespace

std::optional<std::string> Sources::named_elsewhere(std::int64_t tenant_id, SqliteSource::FileId file) {
  if (file == SqliteSource::FileId{}) return "could not be identified";
  // Another tenant's path leading there now, within its own directory (a
  // link of its leading out is refused to it, and must not deny this
  // tenant its own file).
  auto tenants = store_.tenants();
  if (!tenants) return "could not be checked against the other tenants' files";  // fail closed
  if (tenant_with_file(*tenants, file, tenant_id)) return kShared;
  return std::nullopt;
}

const Tenant* tenant_with_file(const std::vector<Tenant>& tenants, SqliteSource::FileId file, std::int64_t except) {
  if (file == SqliteSource::FileId{}) return nullptr;
  for (const Tenant& t : tenants) {
    if (t.id != except && SqliteSource::file_within_directory(t.data_source) == file) return &t;
  }
  return nullptr;
}

std::optional<std::string> Sources::open_elsewhere(std::int64_t tenant_id, SqliteSource::FileId file) {
  // The file another tenant has open (its path may lead elsewhere by now).
  std::vector<std::pair<std::int64_t, std::shared_ptr<Slot>>> slots;
  {
    std::lock_guard lock(mu_);
    slots.assign(slots_.begin(), slots_.end());
  }
  for (const auto& [id, slot] : slots) {
    if (id == tenant_id) continue;
    std::lock_guard lock(slot->source_mu);
    if (slot->source && slot->source->file() == file) return kShared;
  }
  return std::nullopt;
}

Toolbox::Toolbox(Store& store, Sources& sources, bool fixtures)
    : store_(store), sources_(sources), fixtures_(fixtures) {
  add_data_tools();
  if (fixtures) add_fixture_tools();
}

const ToolDef* Toolbox::find(const std::string& name) const {
  for (const ToolDef& t : tools_) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

void Toolbox::add_data_tools() {
  tools_.push_back(
      {"list_entities", "List entities",
       "Lists the tables and views of the tenant's data source with their columns and types. "
       "Schema only: no cell values.",
       object_schema(nlohmann::json::object(), {}), kScopeRead, true,
       [this](const Principal& p, const nlohmann::json&) {
         auto src = sources_.of(p.tenant_id);
         if (!src) return failure(src.error());
         auto list = (*src)->entities();
         if (!list) return failure(list.error());
         nlohmann::json entities = nlohmann::json::array();
         for (const EntityInfo& e : *list) entities.push_back(entity_json(e));
         nlohmann::json body = {{"entities", entities}};
         return answer(body, static_cast<std::int64_t>(list->size()));
       }});
  tools_.push_back(
      {"describe_entity", "Describe an entity",
       "Schema and statistics of one table or view: row count, and per column the fraction of "
       "nulls and the number of distinct values. Never cell values, minima or maxima.",
       object_schema({{"entity", {{"type", "string"}, {"description", "table or view name"}}}},
                     {"entity"}),
       kScopeRead, true,
       [this](const Principal& p, const nlohmann::json& args) {
         auto name = args.find("entity");
         if (name == args.end() || !name->is_string()) return bad_arguments("\"entity\" must be a string");
         auto src = sources_.of(p.tenant_id);
         if (!src) return failure(src.error());
         auto stats = (*src)->describe(name->get<std::string>());
         if (!stats) return failure(stats.error());
         const nlohmann::json body = stats_json(*stats);
         return answer(body, 0);
       }});
  tools_.push_back(
      {"run_query", "Run a read-only SQL query",
       "Runs one read-only SQL SELECT against the tenant's data source and returns the rows "
       "(capped; `truncated` says so). Use `?` placeholders with `params` for values.",
       object_schema({{"sql", {{"type", "string"}, {"description", "one SELECT statement"}}},
                      {"params", {{"type", "array"}, {"description", "values for ? placeholders"},
                                  {"items", {{"type", {"string", "number", "integer", "boolean", "null"}}}}}}},
                     {"sql"}),
       kScopeQuery, true,
       [this](const Principal& p, const nlohmann::json& args) {
         auto sql = args.find("sql");
         if (sql == args.end() || !sql->is_string()) return bad_arguments("\"sql\" must be a string");
         std::vector<nlohmann::json> params;
         if (auto it = args.find("params"); it != args.end()) {
           if (!it->is_array()) return bad_arguments("\"params\" must be an array");
           params.assign(it->begin(), it->end());
         }
         return run_sql(sources_, p, sql->get<std::string>(), params);
       }});
  tools_.push_back(
      {"list_saved_queries", "List saved queries",
       "Lists the tenant's saved queries: name, description, SQL text and parameters.",
       object_schema(nlohmann::json::object(), {}), kScopeRead, true,
       [this](const Principal& p, const nlohmann::json&) {
         auto list = store_.saved_queries(p.tenant_id);
         if (!list) return failure({DataError::Kind::internal, "saved queries are unavailable", list.error().what});
         nlohmann::json items = nlohmann::json::array();
         for (const SavedQuery& q : *list) items.push_back(to_json(q));
         nlohmann::json body = {{"saved_queries", items}};
         return answer(body, static_cast<std::int64_t>(list->size()));
       }});
  tools_.push_back(
      {"run_saved_query", "Run a saved query",
       "Runs a saved query by name; `params` maps each declared parameter to its value.",
       object_schema({{"name", {{"type", "string"}}}, {"params", {{"type", "object"}}}}, {"name"}),
       kScopeQuery, true,
       [this](const Principal& p, const nlohmann::json& args) {
         auto name = args.find("name");
         if (name == args.end() || !name->is_string()) return bad_arguments("\"name\" must be a string");
         auto q = store_.saved_query(p.tenant_id, name->get<std::string>());
         if (!q) return failure({DataError::Kind::internal, "saved queries are unavailable", q.error().what});
         if (!*q) return failure({DataError::Kind::not_found, "no such saved query", ""});
         auto bound = bind_saved(**q, args.value("params", nlohmann::json::object()));
         if (auto* why = std::get_if<std::string>(&bound)) return bad_arguments(*why);
         return run_sql(sources_, p, (*q)->sql, std::get<std::vector<nlohmann::json>>(bound));
       }});
}

nlohmann::json Toolbox::list_resources(const Principal& p) {
  nlohmann::json out = fixtures_ ? fixture_resources() : nlohmann::json::array();
  if (auto src = sources_.of(p.tenant_id)) {
    if (auto list = (*src)->entities()) {
      for (const EntityInfo& e : *list) {
        out.push_back({{"uri", kEntityScheme + e.name}, {"name", e.name},
                       {"description", "schema and statistics of " + e.kind + " " + e.name},
                       {"mimeType", "application/json"}});
      }
    }
  }
  if (auto saved = store_.saved_queries(p.tenant_id)) {
    for (const SavedQuery& q : *saved) {
      out.push_back({{"uri", kSavedScheme + q.name}, {"name", q.name},
                     {"description", q.description}, {"mimeType", "application/json"}});
    }
  }
  return out;
}

nlohmann::json Toolbox::resource_templates() const {
  nlohmann::json out = fixtures_ ? fixture_templates() : nlohmann::json::array();
  for (auto& t : nlohmann::json::array(
      {{{"uriTemplate", std::string(kEntityScheme) + "{name}"}, {"name", "entity"},
        {"description", "schema and statistics of a table or view"}, {"mimeType", "application/json"}},
       {{"uriTemplate", std::string(kSavedScheme) + "{name}"}, {"name", "saved-query"},
        {"description", "a saved query"}, {"mimeType", "application/json"}}})) {
    out.push_back(std::move(t));
  }
  return out;
}

std::optional<nlohmann::json> Toolbox::read_resource(const Principal& p, const std::string& uri) {
  const auto contents = [&](const nlohmann::json& body) {
    return nlohmann::json{{"contents", {{{"uri", uri}, {"mimeType", "application/json"}, {"text", to_text(body)}}}}};
  };
  if (uri.starts_with(kEntityScheme)) {
    auto src = sources_.of(p.tenant_id);
    if (!src) return std::nullopt;
    auto stats = (*src)->describe(uri.substr(sizeof kEntityScheme - 1));
    if (!stats) return std::nullopt;
    return contents(stats_json(*stats));
  }
  if (uri.starts_with(kSavedScheme)) {
    auto q = store_.saved_query(p.tenant_id, uri.substr(sizeof kSavedScheme - 1));
    if (!q || !*q) return std::nullopt;
    return contents(to_json(**q));
  }
  if (fixtures_) return read_fixture(uri);
  return std::nullopt;
}

nlohmann::json Toolbox::list_prompts() const {
  nlohmann::json out = fixtures_ ? fixture_prompts() : nlohmann::json::array();
  for (auto& p : nlohmann::json::array(
      {{{"name", "explore_entity"}, {"title", "Explore an entity"},
        {"description", "Guides an assistant through an entity's schema and statistics before querying it."},
        {"arguments", {{{"name", "entity"}, {"description", "table or view name"}, {"required", true}}}}}})) {
    out.push_back(std::move(p));
  }
  return out;
}

std::variant<std::monostate, std::string, nlohmann::json> Toolbox::get_prompt(
    const std::string& name, const nlohmann::json& args) const {
  if (name != "explore_entity") {
    if (fixtures_) return get_fixture_prompt(name, args);
    return std::monostate{};
  }
  auto entity = args.find("entity");
  if (entity == args.end() || !entity->is_string() || entity->get<std::string>().empty()) {
    return std::string("argument \"entity\" is required");
  }
  const std::string e = entity->get<std::string>();
  return nlohmann::json{
      {"description", "Explore " + e},
      {"messages",
       {{{"role", "user"},
         {"content",
          {{"type", "text"},
           {"text", "Call describe_entity with entity \"" + e +
                        "\" to learn its columns, row count and null fractions. Then propose "
                        "two or three read-only SQL queries over it and run one with run_query, "
                        "using ? placeholders for any values."}}}}}}};
}

std::optional<nlohmann::json> Toolbox::complete(const Principal& p, const nlohmann::json& params) {
  const auto ref = params.find("ref");
  const auto arg = params.find("argument");
  if (ref == params.end() || !ref->is_object() || arg == params.end() || !arg->is_object() ||
      !arg->value("value", nlohmann::json()).is_string()) {
    return std::nullopt;
  }
  const std::string type = ref->value("type", nlohmann::json()).is_string() ? (*ref)["type"].get<std::string>() : "";
  const std::string name = ref->value("name", nlohmann::json()).is_string() ? (*ref)["name"].get<std::string>() : "";
  const std::string uri = ref->value("uri", nlohmann::json()).is_string() ? (*ref)["uri"].get<std::string>() : "";
  const std::string prefix = (*arg)["value"].get<std::string>();
  const bool entity_arg = (type == "ref/prompt" && name == "explore_entity") ||
                          (type == "ref/resource" && uri == std::string(kEntityScheme) + "{name}");
  nlohmann::json values = nlohmann::json::array();
  if (entity_arg) {
    // Names only: the schema, never data.
    if (auto src = sources_.of(p.tenant_id)) {
      if (auto list = (*src)->entities()) {
        for (const EntityInfo& e : *list) {
          if (e.name.starts_with(prefix) && values.size() < 100) values.push_back(e.name);
        }
      }
    }
  } else if (!(fixtures_ && type == "ref/prompt" && name == "test_prompt_with_arguments")) {
    return std::nullopt;
  }
  return nlohmann::json{{"completion", {{"values", values}, {"total", values.size()}, {"hasMore", false}}}};
}

}  // namespace sluice::mcpd
