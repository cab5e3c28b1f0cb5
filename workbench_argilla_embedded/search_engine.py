"""A search engine for argilla-server 2.8 that answers every query from the server's own database.

Imported only inside the server's virtual environment (.argilla-venv), by `launch.py`, which
registers it under the name ENGINE_NAME before uvicorn or the rq worker start; the server picks it
with `ARGILLA_SEARCH_ENGINE=workbench-sql`.

Why no index: Elasticsearch keeps a second copy of every record that the server updates after
each change. Here the database is the only copy, so whatever the web server or the rq worker
wrote (a response, a record's status) is seen by the next search at once, and the indexing calls
are no-ops. Searches are SQL over SQLite's JSON functions; the costs are those of a table scan
per dataset, which is fine for the thousands of records an annotation round holds.

Text search: whole-word matching with Elasticsearch's `simple_query_string` semantics (see
`text_query.py`), run inside SQLite as a registered Python function. We chose that over SQLite
FTS5 because FTS5 needs its own index table kept in step by triggers in a schema that the
server's migrations own (a second copy again), and over plain LIKE because LIKE matches inside
words (`cat` would find `category`) and cannot honour phrases or exclusions.

Answers match the Elasticsearch engine's (argilla_server/search_engine/commons.py) with these
deliberate differences:
- Default order is insertion order (the order records were logged), for every user, so records
  pushed in priority order are annotated in that order; Elasticsearch shuffles per user. A text
  query without a sort is ordered by relevance first.
- Span suggestions and responses can be filtered by label; Elasticsearch does not index them.
- Sorting by a response value uses the lowest value (ascending) or highest (descending) among the
  matching responses; Elasticsearch averages, which is defined only for numbers.
- `get_dataset_user_progress` counts only the user's own responses (Elasticsearch's nested query
  also counts other users' statuses on the same records).
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from argilla_server.database import AsyncSessionLocal, async_engine, sync_engine
from argilla_server.enums import MetadataPropertyType, SimilarityOrder, SortOrder
from argilla_server.models import Dataset, MetadataProperty, Record, Response, Suggestion, User, VectorSettings
from argilla_server.search_engine.base import (
    AndFilter,
    Filter,
    FloatMetadataMetrics,
    IntegerMetadataMetrics,
    MetadataFilterScope,
    MetadataMetrics,
    Order,
    RangeFilter,
    RecordFilterScope,
    ResponseFilterScope,
    SearchEngine,
    SearchResponseItem,
    SearchResponses,
    SuggestionFilterScope,
    TermsFilter,
    TermsMetrics,
    TextQuery,
)
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncSession

from .text_query import sql_score

ENGINE_NAME = "workbench-sql"
VERSION = "1"
# Elasticsearch's cap on terms buckets (commons.py: max_terms_size).
MAX_TERMS = 2**14
PENDING = "pending"
_TIMESTAMP_COLUMNS = {"inserted_at", "updated_at"}
_RECORD_COLUMNS = {"id", "external_id", "inserted_at", "updated_at", "status"}


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    """On every new SQLite connection: the text-search function, and WAL so that the web server's
    reads and the worker's writes (two processes, one file) do not wait on each other."""
    dbapi_connection.create_function("workbench_text_score", 3, sql_score, deterministic=True)
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
    finally:
        cursor.close()


if async_engine.dialect.name == "sqlite":
    event.listen(async_engine.sync_engine, "connect", _configure_sqlite)
    event.listen(sync_engine, "connect", _configure_sqlite)


def _uuid(value: Any) -> str:
    """UUIDs as SQLAlchemy stores them in SQLite: 32 hex digits, no dashes."""
    return uuid.UUID(str(value)).hex


def _json_path(name: str) -> str:
    return '$."' + name.replace('"', '\\"') + '"'


class _Sql:
    """Collects bound parameters while a statement is built from filters and orders."""

    def __init__(self, dataset_id: Any):
        self.params: dict[str, Any] = {"dataset_id": _uuid(dataset_id)}

    def bind(self, value: Any) -> str:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return f":{name}"

    def bind_list(self, values: Iterable[Any]) -> str:
        return ", ".join(self.bind(value) for value in values)


# A JSON element's value, with span elements ({"label", "start", "end"}) reduced to their label.
_ELEMENT = "CASE WHEN {v}.type = 'object' THEN json_extract({v}.value, '$.label') ELSE {v}.value END"


def _element_condition(alias: str, filter: TermsFilter | RangeFilter, sql: _Sql) -> str:
    """A condition on one element of a JSON value (json_each row `alias`), for terms or range."""
    element = _ELEMENT.format(v=alias)
    if isinstance(filter, TermsFilter):
        return f"CAST({element} AS TEXT) IN ({sql.bind_list(str(v) for v in filter.values)})"
    return _range_condition(f"{alias}.value", filter, sql, numeric_type=f"{alias}.type")


def _range_condition(expression: str, filter: RangeFilter, sql: _Sql, numeric_type: str | None = None) -> str:
    parts = []
    if numeric_type:
        parts.append(f"{numeric_type} IN ('integer', 'real')")
    for bound, operator in ((filter.ge, ">="), (filter.le, "<=")):
        if bound is not None:
            parts.append(f"{expression} {operator} {sql.bind(_number_or_text(bound))}")
    return " AND ".join(parts) or "1 = 1"


def _number_or_text(value: Any) -> Any:
    if isinstance(value, (int, float)):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def _timestamp(value: Any) -> str:
    """A range bound on inserted_at/updated_at (ISO text or epoch milliseconds) as stored."""
    if isinstance(value, (int, float)):
        moment = datetime.fromtimestamp(value / 1000, tz=timezone.utc).replace(tzinfo=None)
    else:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        if moment.tzinfo is not None:
            moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


@SearchEngine.register(ENGINE_NAME)
class DatabaseSearchEngine(SearchEngine):
    """Answers from the database; made anew for every request (SearchEngine.get_by_name)."""

    def __init__(self) -> None:
        self._session: AsyncSession | None = None

    @classmethod
    async def new_instance(cls) -> DatabaseSearchEngine:
        return cls()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _rows(self, statement: str, params: dict[str, Any]) -> list[Any]:
        # A session of our own: the engine API hands us model objects, not the request's session.
        if self._session is None:
            self._session = AsyncSessionLocal()
        result = await self._session.execute(text(statement), params)
        return list(result.all())

    async def ping(self) -> bool:
        return (await self._rows("SELECT 1", {}))[0][0] == 1

    async def info(self) -> dict:
        return {
            "name": ENGINE_NAME,
            "version": VERSION,
            "backend": async_engine.dialect.name,
            "description": "answers searches from the Argilla server's own database (no separate index)",
        }

    # Indexing: the database is the only copy, so there is nothing to create, copy or delete.
    async def create_index(self, dataset: Dataset) -> None:
        return None

    async def delete_index(self, dataset: Dataset) -> None:
        return None

    async def configure_metadata_property(self, dataset: Dataset, metadata_property: MetadataProperty) -> None:
        return None

    async def configure_index_vectors(self, vector_settings: VectorSettings) -> None:
        return None

    async def index_records(self, dataset: Dataset, records: Iterable[Record]) -> None:
        return None

    async def partial_record_update(self, record: Record, **update: Any) -> None:
        return None

    async def delete_records(self, dataset: Dataset, records: Iterable[Record]) -> None:
        return None

    async def update_record_response(self, response: Response) -> None:
        return None

    async def delete_record_response(self, response: Response) -> None:
        return None

    async def update_record_suggestion(self, suggestion: Suggestion) -> None:
        return None

    async def delete_record_suggestion(self, suggestion: Suggestion) -> None:
        return None

    # Progress and metrics.
    async def get_dataset_progress(self, dataset: Dataset) -> dict:
        if dataset.is_draft:
            return {}
        rows = await self._rows(
            "SELECT status, COUNT(*) FROM records WHERE dataset_id = :dataset_id GROUP BY status",
            {"dataset_id": _uuid(dataset.id)},
        )
        counts = {str(status): count for status, count in rows}
        return {"total": sum(counts.values()), **counts}

    async def get_dataset_user_progress(self, dataset: Dataset, user: User) -> dict:
        if dataset.is_draft:
            return {}
        rows = await self._rows(
            "SELECT rs.status, COUNT(*) FROM responses rs JOIN records r ON r.id = rs.record_id"
            " WHERE r.dataset_id = :dataset_id AND rs.user_id = :user_id GROUP BY rs.status",
            {"dataset_id": _uuid(dataset.id), "user_id": _uuid(user.id)},
        )
        counts = {str(status): count for status, count in rows}
        return {"total": sum(counts.values()), **counts}

    async def compute_metrics_for(self, metadata_property: MetadataProperty) -> MetadataMetrics:
        params = {"dataset_id": _uuid(metadata_property.dataset_id), "path": _json_path(metadata_property.name)}
        source = "FROM records r, json_each(r.metadata, :path) v WHERE r.dataset_id = :dataset_id"
        property_type = MetadataPropertyType(metadata_property.settings["type"])
        if property_type == MetadataPropertyType.terms:
            rows = await self._rows(
                f"SELECT CAST(v.value AS TEXT) AS term, COUNT(DISTINCT r.id) AS docs, COUNT(*) AS n {source}"
                " AND v.type NOT IN ('object', 'array', 'null') GROUP BY term ORDER BY docs DESC, term ASC",
                params,
            )
            return TermsMetrics(
                total=sum(row[2] for row in rows),
                values=[TermsMetrics.TermCount(term=row[0], count=row[1]) for row in rows[:MAX_TERMS]],
            )
        rows = await self._rows(f"SELECT MIN(v.value), MAX(v.value) {source} AND v.type IN ('integer', 'real')", params)
        low, high = rows[0]
        if property_type == MetadataPropertyType.integer:
            return IntegerMetadataMetrics(
                min=None if low is None else int(low), max=None if high is None else int(high)
            )
        return FloatMetadataMetrics(min=None if low is None else float(low), max=None if high is None else float(high))

    # Search.
    async def search(
        self,
        dataset: Dataset,
        query: TextQuery | str | None = None,
        filter: Filter | None = None,
        sort: list[Order] | None = None,
        offset: int = 0,
        limit: int = 100,
        user_id: Any | None = None,
    ) -> SearchResponses:
        # `user_id` seeds a per-user shuffle in Elasticsearch; we keep insertion order (see above).
        sql = _Sql(dataset.id)
        score = await self._text_score(dataset, sql, query)
        where = self._where(sql, score, filter)
        total = (await self._rows(f"SELECT COUNT(*) FROM records r WHERE {where}", sql.params))[0][0]

        order_by = [self._order(order, sql) for order in sort or []]
        if score and not sort:
            order_by.append(f"{score} DESC")
        order_by.append("r.inserted_at ASC, r.rowid ASC")
        statement = (
            f"SELECT r.id, {score or 'NULL'} FROM records r WHERE {where}"
            f" ORDER BY {', '.join(order_by)} LIMIT {sql.bind(int(limit))} OFFSET {sql.bind(int(offset))}"
        )
        rows = await self._rows(statement, sql.params)
        items = [SearchResponseItem(record_id=uuid.UUID(str(row[0])), score=row[1]) for row in rows]
        return SearchResponses(items=items, total=total)

    async def similarity_search(
        self,
        dataset: Dataset,
        vector_settings: VectorSettings,
        value: list[float] | None = None,
        record: Record | None = None,
        query: TextQuery | str | None = None,
        filter: Filter | None = None,
        max_results: int = 100,
        order: SimilarityOrder = SimilarityOrder.most_similar,
        threshold: float | None = None,
    ) -> SearchResponses:
        if bool(value) == bool(record):
            raise ValueError("Must provide either vector value or record to compute the similarity search")
        sql = _Sql(dataset.id)
        vector_settings_id = sql.bind(_uuid(vector_settings.id))
        where = self._where(sql, await self._text_score(dataset, sql, query), filter)
        if record is not None:
            found = await self._rows(
                f"SELECT value FROM vectors WHERE record_id = :rid AND vector_settings_id = {vector_settings_id}",
                {**sql.params, "rid": _uuid(record.id)},
            )
            if not found:
                raise ValueError(f"Record {record.id} has no vector for {vector_settings.name!r}")
            value = json.loads(found[0][0]) if isinstance(found[0][0], str) else found[0][0]
            where += f" AND r.id != {sql.bind(_uuid(record.id))}"
        rows = await self._rows(
            f"SELECT r.id, v.value FROM records r JOIN vectors v ON v.record_id = r.id"
            f" AND v.vector_settings_id = {vector_settings_id} WHERE {where}",
            sql.params,
        )
        sign = -1.0 if order == SimilarityOrder.least_similar else 1.0
        scored = []
        for record_id, stored in rows:
            candidate = json.loads(stored) if isinstance(stored, str) else stored
            # Elasticsearch's cosine similarity score, (1 + cos) / 2; least similar flips the query.
            similarity = (1.0 + sign * _cosine(value, candidate)) / 2.0
            if threshold is None or similarity >= threshold:
                scored.append((similarity, record_id))
        scored.sort(key=lambda pair: -pair[0])
        items = [SearchResponseItem(record_id=uuid.UUID(str(rid)), score=s) for s, rid in scored[:max_results]]
        return SearchResponses(items=items, total=len(items))

    # SQL building.
    async def _text_fields(self, dataset: Dataset, query: TextQuery | str) -> list[str]:
        rows = await self._rows(
            "SELECT name, settings FROM fields WHERE dataset_id = :dataset_id ORDER BY inserted_at",
            {"dataset_id": _uuid(dataset.id)},
        )
        searchable = []
        for name, settings in rows:
            settings = json.loads(settings) if isinstance(settings, str) else settings or {}
            if settings.get("type") != "image":
                searchable.append(name)
        # The handlers pass their own TextQuery schema (q, field), not the engine's class.
        field = None if isinstance(query, str) else getattr(query, "field", None)
        if field:
            if field not in searchable:
                raise ValueError(f"Field {field!r} is not a searchable field of dataset {dataset.id}")
            return [field]
        return searchable

    async def _text_score(self, dataset: Dataset, sql: _Sql, query: TextQuery | str | None) -> str:
        if query is None:
            return ""
        q = query if isinstance(query, str) else query.q
        names = await self._text_fields(dataset, query)
        return f"workbench_text_score({sql.bind(str(q))}, r.fields, {sql.bind(json.dumps(names))})"

    def _where(self, sql: _Sql, score: str, filter: Filter | None) -> str:
        clauses = ["r.dataset_id = :dataset_id"]
        if score:
            clauses.append(f"{score} IS NOT NULL")
        if filter is not None:
            clauses.append(self._filter(filter, sql))
        return " AND ".join(clauses)

    def _filter(self, filter: Filter, sql: _Sql) -> str:
        if isinstance(filter, AndFilter):
            return "(" + " AND ".join([self._filter(f, sql) for f in filter.filters] or ["1 = 1"]) + ")"
        scope = filter.scope
        if isinstance(scope, MetadataFilterScope):
            path = sql.bind(_json_path(scope.metadata_property))
            return (
                f"EXISTS (SELECT 1 FROM json_each(r.metadata, {path}) m WHERE {_element_condition('m', filter, sql)})"
            )
        if isinstance(scope, SuggestionFilterScope):
            return self._suggestion_filter(filter, scope, sql)
        if isinstance(scope, ResponseFilterScope):
            return self._response_filter(filter, scope, sql)
        if isinstance(scope, RecordFilterScope):
            return self._record_filter(filter, scope, sql)
        raise TypeError(f"Cannot filter by scope {scope!r}")

    @staticmethod
    def _suggestion_filter(filter: Filter, scope: SuggestionFilterScope, sql: _Sql) -> str:
        source = (
            "FROM suggestions s JOIN questions q ON q.id = s.question_id"
            f" WHERE s.record_id = r.id AND q.name = {sql.bind(scope.question)}"
        )
        prop = scope.property or "value"
        if prop in ("value", "score"):
            condition = f"EXISTS (SELECT 1 FROM json_each(s.{prop}) e WHERE {_element_condition('e', filter, sql)})"
        elif prop in ("agent", "type") and isinstance(filter, TermsFilter):
            condition = f"s.{prop} IN ({sql.bind_list(filter.values)})"
        else:
            raise ValueError(f"Cannot filter suggestions by {prop!r} with {type(filter).__name__}")
        return f"EXISTS (SELECT 1 {source} AND {condition})"

    @staticmethod
    def _response_filter(filter: Filter, scope: ResponseFilterScope, sql: _Sql) -> str:
        mine = f" AND rs.user_id = {sql.bind(_uuid(scope.user.id))}" if scope.user is not None else ""
        if scope.question:
            path = sql.bind(_json_path(scope.question) + ".value")
            return (
                f"EXISTS (SELECT 1 FROM responses rs WHERE rs.record_id = r.id{mine} AND EXISTS"
                f' (SELECT 1 FROM json_each(rs."values", {path}) e WHERE {_element_condition("e", filter, sql)}))'
            )
        if scope.property == "status" and isinstance(filter, TermsFilter):
            alternatives = []
            if PENDING in filter.values:
                # Pending for a user: no response from them yet (any status); without a user: none at all.
                alternatives.append(f"NOT EXISTS (SELECT 1 FROM responses rs WHERE rs.record_id = r.id{mine})")
            statuses = [value for value in filter.values if value != PENDING]
            if statuses:
                alternatives.append(
                    f"EXISTS (SELECT 1 FROM responses rs WHERE rs.record_id = r.id{mine}"
                    f" AND rs.status IN ({sql.bind_list(statuses)}))"
                )
            return "(" + " OR ".join(alternatives) + ")"
        raise ValueError(f"Cannot filter responses by scope {scope!r} with {type(filter).__name__}")

    @staticmethod
    def _record_filter(filter: Filter, scope: RecordFilterScope, sql: _Sql) -> str:
        column = str(scope.property)
        if column not in _RECORD_COLUMNS:
            raise ValueError(f"Cannot filter records by {column!r}")
        if isinstance(filter, TermsFilter):
            values = [_uuid(v) if column == "id" else str(v) for v in filter.values]
            return f"r.{column} IN ({sql.bind_list(values)})"
        if column in _TIMESTAMP_COLUMNS:
            bounds = RangeFilter(
                scope=scope,
                ge=None if filter.ge is None else _timestamp(filter.ge),
                le=None if filter.le is None else _timestamp(filter.le),
            )
            return _range_condition(f"r.{column}", bounds, sql)
        return _range_condition(f"r.{column}", filter, sql)

    @staticmethod
    def _order(order: Order, sql: _Sql) -> str:
        direction = "DESC" if order.order == SortOrder.desc else "ASC"
        # Elasticsearch sorts a field with several values by its lowest (asc) or highest (desc).
        pick = "MAX" if direction == "DESC" else "MIN"
        scope = order.scope
        if isinstance(scope, RecordFilterScope):
            column = str(scope.property)
            if column not in _RECORD_COLUMNS:
                raise ValueError(f"Cannot sort records by {column!r}")
            return f"r.{column} {direction}"
        if isinstance(scope, MetadataFilterScope):
            path = sql.bind(_json_path(scope.metadata_property))
            expression = f"(SELECT {pick}(m.value) FROM json_each(r.metadata, {path}) m WHERE m.type != 'null')"
        elif isinstance(scope, SuggestionFilterScope):
            prop = scope.property or "value"
            joins = "FROM suggestions s JOIN questions q ON q.id = s.question_id"
            match = f"WHERE s.record_id = r.id AND q.name = {sql.bind(scope.question)}"
            if prop in ("value", "score"):
                element = _ELEMENT.format(v="e")
                expression = f"(SELECT {pick}({element}) {joins}, json_each(s.{prop}) e {match})"
            elif prop in ("agent", "type"):
                expression = f"(SELECT {pick}(s.{prop}) {joins} {match})"
            else:
                raise ValueError(f"Cannot sort by suggestion property {prop!r}")
        elif isinstance(scope, ResponseFilterScope):
            mine = f" AND rs.user_id = {sql.bind(_uuid(scope.user.id))}" if scope.user is not None else ""
            if scope.question:
                path = sql.bind(_json_path(scope.question) + ".value")
                element = _ELEMENT.format(v="e")
                expression = (
                    f'(SELECT {pick}({element}) FROM responses rs, json_each(rs."values", {path}) e'
                    f" WHERE rs.record_id = r.id{mine})"
                )
            else:
                expression = f"(SELECT {pick}(rs.status) FROM responses rs WHERE rs.record_id = r.id{mine})"
        else:
            raise TypeError(f"Cannot sort by scope {scope!r}")
        # Records without the value come last either way, as in Elasticsearch.
        return f"{expression} IS NULL, {expression} {direction}"


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0
