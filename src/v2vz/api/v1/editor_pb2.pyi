from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DaemonInfo(_message.Message):
    __slots__ = ("version", "protocol_version", "model", "device", "dtype", "versions", "memory_total_bytes", "memory_allocated_bytes", "ready", "queued_jobs", "running_job", "running_stage", "journal_writable", "address", "default_model", "allowed_models", "workers")
    class VersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_ALLOCATED_BYTES_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    QUEUED_JOBS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_JOB_FIELD_NUMBER: _ClassVar[int]
    RUNNING_STAGE_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_WRITABLE_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_MODEL_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_MODELS_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    version: str
    protocol_version: int
    model: str
    device: str
    dtype: str
    versions: _containers.ScalarMap[str, str]
    memory_total_bytes: int
    memory_allocated_bytes: int
    ready: bool
    queued_jobs: int
    running_job: str
    running_stage: str
    journal_writable: bool
    address: str
    default_model: str
    allowed_models: _containers.RepeatedScalarFieldContainer[str]
    workers: _containers.RepeatedCompositeFieldContainer[WorkerInfo]
    def __init__(self, version: _Optional[str] = ..., protocol_version: _Optional[int] = ..., model: _Optional[str] = ..., device: _Optional[str] = ..., dtype: _Optional[str] = ..., versions: _Optional[_Mapping[str, str]] = ..., memory_total_bytes: _Optional[int] = ..., memory_allocated_bytes: _Optional[int] = ..., ready: _Optional[bool] = ..., queued_jobs: _Optional[int] = ..., running_job: _Optional[str] = ..., running_stage: _Optional[str] = ..., journal_writable: _Optional[bool] = ..., address: _Optional[str] = ..., default_model: _Optional[str] = ..., allowed_models: _Optional[_Iterable[str]] = ..., workers: _Optional[_Iterable[_Union[WorkerInfo, _Mapping]]] = ...) -> None: ...

class WorkerInfo(_message.Message):
    __slots__ = ("name", "node", "device", "pid", "state", "job_id", "window", "stage")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    name: str
    node: str
    device: str
    pid: int
    state: str
    job_id: str
    window: int
    stage: str
    def __init__(self, name: _Optional[str] = ..., node: _Optional[str] = ..., device: _Optional[str] = ..., pid: _Optional[int] = ..., state: _Optional[str] = ..., job_id: _Optional[str] = ..., window: _Optional[int] = ..., stage: _Optional[str] = ...) -> None: ...

class MediaChunk(_message.Message):
    __slots__ = ("filename", "data")
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    filename: str
    data: bytes
    def __init__(self, filename: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class UploadedMedia(_message.Message):
    __slots__ = ("media_id", "size_bytes", "sha256")
    MEDIA_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    media_id: str
    size_bytes: int
    sha256: str
    def __init__(self, media_id: _Optional[str] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class SubmitEditRequest(_message.Message):
    __slots__ = ("source_path", "media_id", "start", "frames", "source_prompt", "prompt", "options", "output", "out_frames_dir", "stream_frames", "client", "source_fps", "model", "codec", "no_audio", "overwrite", "preview", "take", "matte", "matte_start", "mask_dir", "loras")
    class OptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SOURCE_PATH_FIELD_NUMBER: _ClassVar[int]
    MEDIA_ID_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    SOURCE_PROMPT_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    OUT_FRAMES_DIR_FIELD_NUMBER: _ClassVar[int]
    STREAM_FRAMES_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FPS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    NO_AUDIO_FIELD_NUMBER: _ClassVar[int]
    OVERWRITE_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_FIELD_NUMBER: _ClassVar[int]
    TAKE_FIELD_NUMBER: _ClassVar[int]
    MATTE_FIELD_NUMBER: _ClassVar[int]
    MATTE_START_FIELD_NUMBER: _ClassVar[int]
    MASK_DIR_FIELD_NUMBER: _ClassVar[int]
    LORAS_FIELD_NUMBER: _ClassVar[int]
    source_path: str
    media_id: str
    start: int
    frames: int
    source_prompt: str
    prompt: str
    options: _containers.ScalarMap[str, str]
    output: str
    out_frames_dir: str
    stream_frames: bool
    client: str
    source_fps: str
    model: str
    codec: str
    no_audio: bool
    overwrite: bool
    preview: bool
    take: int
    matte: str
    matte_start: int
    mask_dir: str
    loras: _containers.RepeatedCompositeFieldContainer[Lora]
    def __init__(self, source_path: _Optional[str] = ..., media_id: _Optional[str] = ..., start: _Optional[int] = ..., frames: _Optional[int] = ..., source_prompt: _Optional[str] = ..., prompt: _Optional[str] = ..., options: _Optional[_Mapping[str, str]] = ..., output: _Optional[str] = ..., out_frames_dir: _Optional[str] = ..., stream_frames: _Optional[bool] = ..., client: _Optional[str] = ..., source_fps: _Optional[str] = ..., model: _Optional[str] = ..., codec: _Optional[str] = ..., no_audio: _Optional[bool] = ..., overwrite: _Optional[bool] = ..., preview: _Optional[bool] = ..., take: _Optional[int] = ..., matte: _Optional[str] = ..., matte_start: _Optional[int] = ..., mask_dir: _Optional[str] = ..., loras: _Optional[_Iterable[_Union[Lora, _Mapping]]] = ...) -> None: ...

class Lora(_message.Message):
    __slots__ = ("path", "scale", "digest")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    path: str
    scale: float
    digest: str
    def __init__(self, path: _Optional[str] = ..., scale: _Optional[float] = ..., digest: _Optional[str] = ...) -> None: ...

class SubmitEditReply(_message.Message):
    __slots__ = ("job_id", "queue_position", "notes")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    QUEUE_POSITION_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    queue_position: int
    notes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, job_id: _Optional[str] = ..., queue_position: _Optional[int] = ..., notes: _Optional[_Iterable[str]] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("job_id", "after_sequence", "cancel_on_disconnect")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    CANCEL_ON_DISCONNECT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    after_sequence: int
    cancel_on_disconnect: bool
    def __init__(self, job_id: _Optional[str] = ..., after_sequence: _Optional[int] = ..., cancel_on_disconnect: _Optional[bool] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("job_id", "sequence", "time_unix", "queued", "progress", "frame", "done", "failed", "cancelled")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIME_UNIX_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    sequence: int
    time_unix: float
    queued: Queued
    progress: Progress
    frame: FrameReady
    done: Done
    failed: Failed
    cancelled: Cancelled
    def __init__(self, job_id: _Optional[str] = ..., sequence: _Optional[int] = ..., time_unix: _Optional[float] = ..., queued: _Optional[_Union[Queued, _Mapping]] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ..., frame: _Optional[_Union[FrameReady, _Mapping]] = ..., done: _Optional[_Union[Done, _Mapping]] = ..., failed: _Optional[_Union[Failed, _Mapping]] = ..., cancelled: _Optional[_Union[Cancelled, _Mapping]] = ...) -> None: ...

class Queued(_message.Message):
    __slots__ = ("position", "requeued")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    REQUEUED_FIELD_NUMBER: _ClassVar[int]
    position: int
    requeued: bool
    def __init__(self, position: _Optional[int] = ..., requeued: _Optional[bool] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("stage", "step", "total", "cached", "window", "windows", "reason")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    WINDOWS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    stage: str
    step: int
    total: int
    cached: bool
    window: int
    windows: int
    reason: str
    def __init__(self, stage: _Optional[str] = ..., step: _Optional[int] = ..., total: _Optional[int] = ..., cached: _Optional[bool] = ..., window: _Optional[int] = ..., windows: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class FrameReady(_message.Message):
    __slots__ = ("index", "path", "png", "chunk", "chunks")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    PNG_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    index: int
    path: str
    png: bytes
    chunk: int
    chunks: int
    def __init__(self, index: _Optional[int] = ..., path: _Optional[str] = ..., png: _Optional[bytes] = ..., chunk: _Optional[int] = ..., chunks: _Optional[int] = ...) -> None: ...

class Done(_message.Message):
    __slots__ = ("output", "frame_paths", "timings", "inversion_cached", "seconds", "frames", "take", "preview", "sidecar")
    class TimingsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    FRAME_PATHS_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    INVERSION_CACHED_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    TAKE_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_FIELD_NUMBER: _ClassVar[int]
    SIDECAR_FIELD_NUMBER: _ClassVar[int]
    output: str
    frame_paths: _containers.RepeatedScalarFieldContainer[str]
    timings: _containers.ScalarMap[str, float]
    inversion_cached: bool
    seconds: float
    frames: int
    take: int
    preview: bool
    sidecar: str
    def __init__(self, output: _Optional[str] = ..., frame_paths: _Optional[_Iterable[str]] = ..., timings: _Optional[_Mapping[str, float]] = ..., inversion_cached: _Optional[bool] = ..., seconds: _Optional[float] = ..., frames: _Optional[int] = ..., take: _Optional[int] = ..., preview: _Optional[bool] = ..., sidecar: _Optional[str] = ...) -> None: ...

class Failed(_message.Message):
    __slots__ = ("reason", "code")
    REASON_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    reason: str
    code: str
    def __init__(self, reason: _Optional[str] = ..., code: _Optional[str] = ...) -> None: ...

class Cancelled(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class CancelJobReply(_message.Message):
    __slots__ = ("state", "job_id", "had_ended")
    STATE_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    HAD_ENDED_FIELD_NUMBER: _ClassVar[int]
    state: str
    job_id: str
    had_ended: bool
    def __init__(self, state: _Optional[str] = ..., job_id: _Optional[str] = ..., had_ended: _Optional[bool] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("limit", "page_token")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    limit: int
    page_token: str
    def __init__(self, limit: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class JobSummary(_message.Message):
    __slots__ = ("job_id", "state", "source", "prompt", "start", "frames", "submitted_unix", "finished_unix", "reason", "attempts", "started_unix", "output", "out_frames_dir", "model", "options", "client", "take", "preview", "source_prompt", "codec", "no_audio", "matte", "matte_digest", "mask_dir", "matte_start", "loras")
    class OptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_UNIX_FIELD_NUMBER: _ClassVar[int]
    FINISHED_UNIX_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    STARTED_UNIX_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    OUT_FRAMES_DIR_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    TAKE_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_FIELD_NUMBER: _ClassVar[int]
    SOURCE_PROMPT_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    NO_AUDIO_FIELD_NUMBER: _ClassVar[int]
    MATTE_FIELD_NUMBER: _ClassVar[int]
    MATTE_DIGEST_FIELD_NUMBER: _ClassVar[int]
    MASK_DIR_FIELD_NUMBER: _ClassVar[int]
    MATTE_START_FIELD_NUMBER: _ClassVar[int]
    LORAS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    state: str
    source: str
    prompt: str
    start: int
    frames: int
    submitted_unix: float
    finished_unix: float
    reason: str
    attempts: int
    started_unix: float
    output: str
    out_frames_dir: str
    model: str
    options: _containers.ScalarMap[str, str]
    client: str
    take: int
    preview: bool
    source_prompt: str
    codec: str
    no_audio: bool
    matte: str
    matte_digest: str
    mask_dir: str
    matte_start: int
    loras: _containers.RepeatedCompositeFieldContainer[Lora]
    def __init__(self, job_id: _Optional[str] = ..., state: _Optional[str] = ..., source: _Optional[str] = ..., prompt: _Optional[str] = ..., start: _Optional[int] = ..., frames: _Optional[int] = ..., submitted_unix: _Optional[float] = ..., finished_unix: _Optional[float] = ..., reason: _Optional[str] = ..., attempts: _Optional[int] = ..., started_unix: _Optional[float] = ..., output: _Optional[str] = ..., out_frames_dir: _Optional[str] = ..., model: _Optional[str] = ..., options: _Optional[_Mapping[str, str]] = ..., client: _Optional[str] = ..., take: _Optional[int] = ..., preview: _Optional[bool] = ..., source_prompt: _Optional[str] = ..., codec: _Optional[str] = ..., no_audio: _Optional[bool] = ..., matte: _Optional[str] = ..., matte_digest: _Optional[str] = ..., mask_dir: _Optional[str] = ..., matte_start: _Optional[int] = ..., loras: _Optional[_Iterable[_Union[Lora, _Mapping]]] = ...) -> None: ...

class ListJobsReply(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[JobSummary]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[JobSummary, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
