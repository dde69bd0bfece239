# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_arch_global_optspecs
    string join \n R/repo= json q/quiet no-progress h/help V/version
end

function __fish_arch_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_arch_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_arch_using_subcommand
    set -l cmd (__fish_arch_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c arch -n "__fish_arch_needs_command" -s R -l repo -d 'Repository directory (default: $ARCH_REPO, else the current directory or a parent)' -r -F
complete -c arch -n "__fish_arch_needs_command" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c arch -n "__fish_arch_needs_command" -s q -l quiet -d 'Print nothing but data and errors'
complete -c arch -n "__fish_arch_needs_command" -l no-progress -d 'Never show progress bars'
complete -c arch -n "__fish_arch_needs_command" -s h -l help -d 'Print help'
complete -c arch -n "__fish_arch_needs_command" -s V -l version -d 'Print version'
complete -c arch -n "__fish_arch_needs_command" -f -a "init" -d 'Create a repository in DIR (created if missing; must be empty)'
complete -c arch -n "__fish_arch_needs_command" -f -a "put" -d 'Store a file (or stdin with `-`) as object NAME. Over an existing object: a new version that keeps the uuid, creation time and image registration, and replaces the data, content type and user metadata (the previous version stays in `arch history`)'
complete -c arch -n "__fish_arch_needs_command" -f -a "get" -d 'Write object NAME to stdout or to a file (zero blocks become holes in a file)'
complete -c arch -n "__fish_arch_needs_command" -f -a "ls" -d 'List containers (no argument) or the objects of CONTAINER whose names start with PREFIX'
complete -c arch -n "__fish_arch_needs_command" -f -a "info" -d 'Show an object\'s system fields, user metadata and image/snapshot view; without NAME, the repository'
complete -c arch -n "__fish_arch_needs_command" -f -a "meta" -d 'Show or change an object\'s user metadata (an empty value deletes a key)'
complete -c arch -n "__fish_arch_needs_command" -f -a "cp" -d 'Copy object SRC to DST: a new uuid, the same blocks, no data copied'
complete -c arch -n "__fish_arch_needs_command" -f -a "mv" -d 'Move object SRC to DST, keeping its uuid and image registration'
complete -c arch -n "__fish_arch_needs_command" -f -a "rm" -d 'Remove object NAME (with any image registration). Space is reclaimed by `arch gc`'
complete -c arch -n "__fish_arch_needs_command" -f -a "hashmap" -d 'Print the Pithos hashmap of NAME (`{"block_hash","block_size","bytes","hashes"}`)'
complete -c arch -n "__fish_arch_needs_command" -f -a "history" -d 'List the kept versions of NAME, newest first (version, size, hash, modified, content type)'
complete -c arch -n "__fish_arch_needs_command" -f -a "restore" -d 'Make version N of NAME its current content and metadata again, as a new version (no block is copied)'
complete -c arch -n "__fish_arch_needs_command" -f -a "prune-versions" -d 'Remove old versions of objects (all objects, or the NAMEs given); current versions are always kept. Space is reclaimed by `arch gc`'
complete -c arch -n "__fish_arch_needs_command" -f -a "fsck" -d 'Check that every resource\'s map and blocks are present (and intact with --read-data)'
complete -c arch -n "__fish_arch_needs_command" -f -a "gc" -d 'Free the space of deleted objects and volumes, superseded versions and dropped blocks'
complete -c arch -n "__fish_arch_needs_command" -f -a "du" -d 'Show space use: per resource and for the whole repository, with the deduplication ratio'
complete -c arch -n "__fish_arch_needs_command" -f -a "image" -d 'Register objects as images or snapshots and manage their metadata (metadata only: no data is ever copied)'
complete -c arch -n "__fish_arch_needs_command" -f -a "clone" -d 'Create volume VOLUME as a thin clone of SOURCE (an object name, or an image/snapshot REF). Only metadata is written; the clone shares every block with its source. A clone of an Image (not a Snapshot, not a plain object) is then customized offline'
complete -c arch -n "__fish_arch_needs_command" -f -a "snapshot" -d 'Freeze VOLUME\'s current content as a Snapshot object: NAME in CONTAINER (default `snapshots/`), or NAME itself when it holds a `/` (`container/object`). Only blocks written since the last snapshot are hashed; the volume stays writable'
complete -c arch -n "__fish_arch_needs_command" -f -a "serve" -d 'Serve volumes and read-only resources over NBD (to QEMU, qemu-img, nbdcopy, nbd-client). A volume is served read-write (copy-on-write into the repository); objects, images and snapshots read-only. Writes are durable once a FLUSH (or FUA) is answered'
complete -c arch -n "__fish_arch_needs_command" -f -a "volume" -d 'Read, write, list, inspect, rename, resize, remove, import and export volumes'
complete -c arch -n "__fish_arch_needs_command" -f -a "customize" -d 'Run the customization tasks (partition and filesystem growth, hostname, machine id, passwords, SSH keys, files) on a volume, offline and without root'
complete -c arch -n "__fish_arch_needs_command" -f -a "send" -d 'Write objects, images, snapshots and volumes as one self-contained stream (stdout by default) that `arch receive` applies elsewhere. With --base, blocks the base resources hold are left out: the receiver must have received those bases'
complete -c arch -n "__fish_arch_needs_command" -f -a "receive" -d 'Apply a stream written by `arch send`: every block is verified against its hash and the trailer checksum is checked before anything becomes visible; then the resources appear in one catalog commit. Blocks already present are not written again'
complete -c arch -n "__fish_arch_needs_command" -f -a "copy" -d 'Copy objects, images, snapshots and volumes into another repository. Each block the destination lacks is sent once; the destination checks the stream as `arch receive` does and adds the resources in one commit (all or nothing)'
complete -c arch -n "__fish_arch_needs_command" -f -a "diff" -d 'Show where two resources (objects, images, snapshots, volumes, or NAME@N versions) differ, block by block, from their maps: shared data is never read. Like `rbd diff`: offset, length and type (`data`: B holds other data; `zero`: B reads zeros there)'
complete -c arch -n "__fish_arch_needs_command" -f -a "generate" -d 'Generate shell completions or man pages (for packagers; the results are committed)'
complete -c arch -n "__fish_arch_needs_command" -f -a "complete" -d 'Print the repository names that complete the last of WORDS (the words after `arch`, the one being completed last, possibly empty)'
complete -c arch -n "__fish_arch_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c arch -n "__fish_arch_using_subcommand init" -l block-size -d 'Block size: a power of two from 4K to 64M' -r
complete -c arch -n "__fish_arch_using_subcommand init" -l shared-group -d 'Share the repository with GROUP (a name or numeric id you are a member of)' -r
complete -c arch -n "__fish_arch_using_subcommand init" -l catalog -d 'Keep the catalog in PostgreSQL (postgres://USER@HOST[:PORT]/DB[?schema=NAME]), shared by every host that runs the same init; the password comes from PGPASSWORD or ~/.pgpass, never from the URL' -r
complete -c arch -n "__fish_arch_using_subcommand init" -l store -d 'Keep blocks and maps in an S3-compatible object store, s3://BUCKET[/PREFIX]: creates the repository there, or joins it when it exists (another host ran the same command). Credentials come from AWS_* or ~/.aws, never from the URL' -r
complete -c arch -n "__fish_arch_using_subcommand init" -l packs -d 'Store blocks many to a file (`packs/`), so that gc removes a few large files instead of one per block: auto = on for block sizes up to 64K in a local store; never with --store. Fixed at init' -r -f -a "auto\t'On when the block size is at most 64 KiB and the store is local'
on\t'Packs whatever the block size (a local store only): many small files become few'
off\t'One file per block under `blocks/` (format 1, readable by older arch builds)'"
complete -c arch -n "__fish_arch_using_subcommand init" -s R -l repo -d 'Repository directory (default: $ARCH_REPO, else the current directory or a parent)' -r -F
complete -c arch -n "__fish_arch_using_subcommand init" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c arch -n "__fish_arch_using_subcommand init" -s q -l quiet -d 'Print nothing but data and errors'
complete -c arch -n "__fish_arch_using_subcommand init" -l no-progress -d 'Never show progress bars'
complete -c arch -n "__fish_arch_using_subcommand init" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c arch -n "__fish_arch_using_subcommand init" -s V -l version -d 'Print version'
complete -c arch -n "__fish_arch_using_subcommand put" -l content-type -d 'Content type (default application/octet-stream)' -r
complete -c arch -n "__fish_arch_using_subcommand put" -l meta -d 'User metadata KEY=VALUE (repeatable)' -r
complete -c arch -n "__fish_arch_using_subcommand put" -s R -l repo -d 'Repository directory (default: $ARCH_REPO, else the current directory or a parent)' -r -F
complete -c arch -n "__fish_arch_using_subcommand put" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c arch -n "__fish_arch_using_subcommand put" -s q -l quiet -d 'Print nothing but data and errors'
complete -c arch -n "__fish_arch_using_subcommand put" -l no-progress -d 'Never show progress bars'
complete -c arch -n "__fish_arch_using_subcommand put" -s h -l help -d 'Print help'
complete -c arch -n "__fish_arch_using_subcommand put" -s V -l version -d 'Print version'
complete -c arch -n "__fish_arch_using_subcommand get" -s o -l output -d 'Output file, or `-` for stdout (the default). A file is written to a temporary name and renamed when complete' -r -F
complete -c arch -n "__fish_arch_using_subcommand get" -l version -d 'Read version N instead of the current one (see `arch history`)' -r
complete -c arch -n "__fish_arch_using_subcommand get" -s R -l repo -d 'Repository directory (default: $ARCH_REPO, else the current directory or a parent)' -r -F
complete -c arch -n "__fish_arch_using_subcommand get" -l force -d 'Replace FILE if it exists'
complete -c arch -n "__fish_arch_using_subcommand get" -l no-verify -d 'Skip verifying blocks against their hashes'
complete -c arch -n "__fish_arch_using_subcommand get" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c arch -n "__fish_arch_using_subcommand get" -s q -l quiet -d 'Print nothing but data and errors'
complete -c arch -n "__fish_arch_using_subcommand get" -l no-progress -d 'Never show progress bars'
complete -c arch -n "__fish_arch_using_subcommand get" -s h -l help -d 'Print help'
complete -c arch -n "__fish_arch_using_subcommand ls" -l prefix -d 'Only objects whose name (inside the container) starts with P' -r
complete -c arch -n "__fish_arch_using_subcommand ls" -l delimiter -d 'Roll names up to the first D after the prefix into pseudo-folders (`subdir`)' -r
complete -c arch -n "__fish_arch_using_subcommand ls" -l marker -d 'Only names after M (the last name of the previous page)' -r
complete -c arch -n "__fish_arch_using_subcommand ls" -l limit -d 'At most N entries (objects and pseudo-folders)' -r
complete -c arch -n "__fish_arch_using_subcommand ls" -s R -l repo -d 'Repository directory (default: $ARCH_REPO, else the current directory or a parent)' -r -F
complete -c arch -n "__fish_arch_using_subcommand ls" -s l -l long -d 'Long listing: kind, size, modified time and hash'
complete -c arch -n "__fish_arch_using_subcommand ls" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c arch -n "__fish_arch_using_subcommand ls" -s q -l quiet -d 'Print nothing but data and errors'
complete -c arch -n "__fish_arch_using_subcommand ls" -l no-progress -d 'Never show progress bars'
complete -c arch -n "__fish_arch_using_subcommand ls" -s h -l help -d 'Print help'
complete -c arch -n "__fish_arch_using_subcommand ls" -s V -l version -d 'Print version'
complete -c arch -n "__fish_arch_using_subcommand info" -l version -d 'Read version N instead of the current one (see `arch history`)' -r
complete -c arch -n "__fish_arch_using_subcommand info" -s R -l repo -d 'Repository directory (default: $ARCH_REPO, else the current directory or a parent)' -r -F
complete -c arch -n "__fish_arch_using_subcommand info" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c arch -n "__fish_arch_using_subcommand info" -s q -l quiet -d 'Print nothing but data and errors'
complete -c arch -n "__fish_arch_using_subcommand info" -l no-progress -d 'Never show progress bars'
complete -c arch -n "__fish_arch_using_subcommand info" -s h -l help -d 'Print help'
complete -c arch -n "__fish_arch_using_subcommand meta" -l set -d 'Set KEY=VALUE (repeatable; an empty VALUE deletes KEY)' -r
complete -c arch -n "__fish_arch_using_subcommand meta" -l unset -d 'Remove KEY (repeatable)' -r
complete -c arch -n "__fish_arch_using_subcommand meta" -s R -l repo -d 'Repository directory (default: $ARCH_REPO, else the current directory or a parent)' -r -F
complete -c arch -n "__fish_arch_using_subcommand meta" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c arch -n "__fish_arch_using_subcommand meta" -s q -l quiet -d 'Print nothing but data and errors'
complete -c arch -n "__fish_arch_using_subcommand meta" -l no-progress -d 'Never show progress bars'
complete -c arch -n "__fish_arch_using_subcommand meta" -s h -l help -d 'Print help'
complete -c arch -n "__fish_arch_using_subcommand meta" -s V -l version -d 'Print version'
complete -c arch -n "__fish_arch_using_subcommand cp" -l version -d 'Copy version N of SRC instead of its current one (see `arch history`)' -r
complete -c arch -n "__fish_arch_using_subcommand cp" -s R -l repo -d 'Repository directory (default: $ARCH_REPO, else the current directory or a parent)' -r -F
complete -c arch -n "__fish_arch_using_subcommand cp" -l force -d 'Overwrite DST if it exists (it keeps its uuid, as with put)'
complete -c arch -n "__fish_arch_using_subcommand cp" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c arch -n "__fish_arch_using_subcommand cp" -s q -l quiet -d 'Print nothing but data and errors'
complete -c arch -n "__fish_arch_using_subcommand cp" -l no-progress -d 'Never show progress bars'
complete -c arch -n "__fish_arch_using_subcommand cp" -s h -l help -d 'Print help'
complete -c arch -n "__fish_arch_using_subcommand mv" -s R -l repo -d 'Repository directory (default: $ARCH_REPO, else the current directory or a parent)' -r -F
complete -c arch -n "__fish_arch_using_subcommand mv" -l force -d 'Replace DST if it exists'
complete -c arch -n "__fish_arch_using_subcommand mv" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c arch -n "__fish_arch_using_subcommand mv" -s q -l quiet -d 'Print nothing but data and errors'
complete -c arch -n "__fish_arch_using_subcommand mv" -l no-progress -d 'Never show progress bars'
complete -c arch -n "__fish_arch_using_subcommand mv" -s h -l help -d 'Print help'
complete -c arch -n "__fish_arch_using_subcommand mv" -s V -l version -d 'Print version'
complete -c arch -n "__fish_arch_using_subcommand rm" -s R -l repo -d 'Repository directory (default: $ARCH_REPO, else the current directory or a parent)' -r -F
complete -c arch -n "__fish_arch_using_subcommand rm" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c arch -n "__fish_arch_using_subcommand rm" -s q -l quiet -d 'Print nothing but data and errors'
complete -c arch -n "__fish_arch_using_subcommand rm" -l no-progress -d 'Never show progress bars'
complete -c arch -n "__fish_arch_using_subcommand rm" -s h -l help -d 'Print help'
complete -c arch -n "__fish_arch_using_subcommand rm" -s V -l version -d 'Print version'
complete -c arch -n "__fish_arch_using_subcommand hashmap" -l version -d 'Read version N instead of the current one (see `arch history`)' -r
complete -c arch -n "__fish_arch_using_subcommand hashmap" -s R -l repo -d 'Repository directory (default: $ARCH_REPO, else the current directory or a parent)' -r -F
complete -c arch -n "__fish_arch_using_subcommand hashmap" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c arch -n "__fish_arch_using_subcommand hashmap" -s q -l quiet -d 'Print nothing but data and errors'
complete -c arch -n "__fish_arch_using_subcommand hashmap" -l no-progress -d 'Never show progress bars'
complete -c arch -n "__fish_arch_using_subcommand hashmap" -s h -l help -d 'Print help'
complete -c arch -n "__fish_arch_using_subcommand history" -s R -l repo -d 'Repository directory (default: $ARCH_REPO, else the current directory or a parent)' -r -F
complete -c arch -n "__fish_arch_using_subcommand history" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c arch -n "__fish_arch_using_subcommand history" -s q -l quiet -d 'Print nothing but data and errors'
complete -c arch -n "__fish_arch_using_subcommand history" -l no-progress -d 'Never show progress bars'
complete -c arch -n "__fish_arch_using_subcommand history" -s h -l help -d 'Print help'
complete -c arch -n "__fish_arch_using_subcommand history" -s V -l version -d 'Print version'
complete -c arch -n "__fish_arch_using_subcommand restore" -l version -d 'The version to restore (see `arch history`)' -r
complete -c arch -n "__fish_arch_using_subcommand restore" -s R -l repo -d 'Repository directory (default: $ARCH_REPO, else the current directory or a parent)' -r -F
complete -c arch -n "__fish_arch_using_subcommand restore" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c arch -n "__fish_arch_using_subcommand restore" -s q -l quiet -d 'Print nothing but data and errors'
complete -c arch -n "__fish_arch_using_subcommand restore" -l no-progress -d 'Never show progress bars'
complete -c arch -n "__fish_arch_using_subcommand restore" -s h -l help -d 'Print help'
complete -c arch -n "__fish_arch_using_subcommand prune-versions" -l keep -d 'Keep the newest N versions of each object (the current one counts)' -r
complete -c arch -n "__fish_arch_using_subcommand prune-versions" -l older-than -d 'Remove old versions modified longer ago than DURATION (e.g. 30d, 12h)' -r
complete -c arch -n "__fish_arch_using_subcommand prune-versions" -s R -l repo -d 'Repository directory (default: $ARCH_REPO, else the current directory or a parent)' -r -F
complete -c arch -n "__fish_arch_using_subcommand prune-versions" -l dry-run -d 'Show what would be removed; change nothing'
complete -c arch -n "__fish_arch_using_subcommand prune-versions" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c arch -n "__fish_arch_using_subcommand prune-versions" -s q -l quiet -d 'Print nothing but data and errors'
complete -c arch -n "__fish_arch_using_subcommand prune-versions" -l no-progress -d 'Never show progress bars'
complete -c arch -n "__fish_arch_using_subcommand prune-versions" -s h -l help -d 'Print help'
complete -c arch -n "__fish_arch_using_subcommand prune-versions" -s V -l version -d 'Print version'
complete -c arch -n "__fish_arch_using_subcommand fsck" -s R -l repo -d 'Repository directory (default: $ARCH_REPO, else the current directory or a parent)' -r -F
complete -c arch -n "__fish_arch_using_subcommand fsck" -l read-data -d 'Rehash every stored block and report corrupted ones with the resources using them'
complete -c arch -n "__fish_arch_using_subcommand fsck" -l repair -d 'Remove what is provably garbage (temporary files, leftover private-block files, stale locks); never anything a resource references. Move corrupt blocks and maps (with --read-data, every corrupt block) to quarantine/, so the next put of their data writes them again; restrict permissions wider than the repository\'s'
complete -c arch -n "__fish_arch_using_subcommand fsck" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c arch -n "__fish_arch_using_subcommand fsck" -s q -l quiet -d 'Print nothing but data and errors'
complete -c arch -n "__fish_arch_using_subcommand fsck" -l no-progress -d 'Never show progress bars'
complete -c arch -n "__fish_arch_using_subcommand fsck" -s h -l help -d 'Print help'
complete -c arch -n "__fish_arch_using_subcommand fsck" -s V -l version -d 'Print version'
complete -c arch -n "__fish_arch_using_subcommand gc" -l max-unused -d 'Leave packs that are partly unused in place while the unused bytes they hold stay under PERCENT of the bytes kept in packs; packs with the largest unused share are rewritten first. Whole unused packs are always removed. Default 0: every unused byte is freed (deleted data is gone from disk)' -r
complete -c arch -n "__fish_arch_using_subcommand gc" -s R -l repo -d 'Repository directory (default: $ARCH_REPO, else the current directory or a parent)' -r -F
complete -c arch -n "__fish_arch_using_subcommand gc" -l dry-run -d 'Report what would be freed without removing anything'
complete -c arch -n "__fish_arch_using_subcommand gc" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c arch -n "__fish_arch_using_subcommand gc" -s q -l quiet -d 'Print nothing but data and errors'
complete -c arch -n "__fish_arch_using_subcommand gc" -l no-progress -d 'Never show progress bars'
complete -c arch -n "__fish_arch_using_subcommand gc" -s h -l help -d 'Print help'
complete -c arch -n "__fish_arch_using_subcommand gc" -s V -l version -d 'Print version'
complete -c arch -n "__fish_arch_using_subcommand du" -s R -l repo -d 'Repository directory (default: $ARCH_REPO, else the current directory or a parent)' -r -F
complete -c arch -n "__fish_arch_using_subcommand du" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c arch -n "__fish_arch_using_subcommand du" -s q -l quiet -d 'Print nothing but data and errors'
complete -c arch -n "__fish_arch_using_subcommand du" -l no-progress -d 'Never show progress bars'
complete -c arch -n "__fish_arch_using_subcommand du" -s h -l help -d 'Print help'
complete -c arch -n "__fish_arch_using_subcommand du" -s V -l version -d 'Print version'
complete -c arch -n "__fish_arch_using_subcommand image; and not __fish_seen_subcommand_from register unregister ls info modify mark help" -s R -l repo -d 'Repository directory (default: $ARCH_REPO, else the current directory or a parent)' -r -F
complete -c arch -n "__fish_arch_using_subcommand image; and not __fish_seen_subcommand_from register unregister ls info modify mark help" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c arch -n "__fish_arch_using_subcommand image; and not __fish_seen_subcommand_from register unregister ls info modify mark help" -s q -l quiet -d 'Print nothing but data and errors'
complete -c arch -n "__fish_arch_using_subcommand image; and not __fish_seen_subcommand_from register unregister ls info modify mark help" -l no-progress -d 'Never show progress bars'
complete -c arch -n "__fish_arch_using_subcommand image; and not __fish_seen_subcommand_from register unregister ls info modify mark help" -s h -l help -d 'Print help'
complete -c arch -n "__fish_arch_using_subcommand image; and not __fish_seen_subcommand_from register unregister ls info modify mark help" -s V -l version -d 'Print version'
complete -c arch -n "__fish_arch_using_subcommand image; and not __fish_seen_subcommand_from register unregister ls info modify mark help" -f -a "register" -d 'Register the object NAME as an image (id = object uuid, checksum = object hash). Registering again updates the same image. Only metadata is written'
complete -c arch -n "__fish_arch_using_subcommand image; and not __fish_seen_subcommand_from register unregister ls info modify mark help" -f -a "unregister" -d 'Remove the image registration; the object stays, byte-identical'
complete -c arch -n "__fish_arch_using_subcommand image; and not __fish_seen_subcommand_from register unregister ls info modify mark help" -f -a "ls" -d 'List registered images (snapshots with --snapshots, both with --all)'
complete -c arch -n "__fish_arch_using_subcommand image; and not __fish_seen_subcommand_from register unregister ls info modify mark help" -f -a "info" -d 'Show an image or snapshot'
complete -c arch -n "__fish_arch_using_subcommand image; and not __fish_seen_subcommand_from register unregister ls info modify mark help" -f -a "modify" -d 'Change an image\'s display name, properties or visibility'
complete -c arch -n "__fish_arch_using_subcommand image; and not __fish_seen_subcommand_from register unregister ls info modify mark help" -f -a "mark" -d 'Turn an image into a snapshot or a snapshot back into an image (metadata only)'
complete -c arch -n "__fish_arch_using_subcommand image; and not __fish_seen_subcommand_from register unregister ls info modify mark help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from register" -l name -d 'Display name of the image' -r
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from register" -l disk-format -d 'diskdump (default), extdump or ntfsdump' -r
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from register" -l container-format -d 'bare (default), aki, ari, ami or ovf' -r
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from register" -s p -l property -d 'Property KEY=VALUE (repeatable; keys are case-insensitive, stored upper-case)' -r
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from register" -l size -d 'Expected size in bytes; refused unless it matches the object' -r
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from register" -l checksum -d 'Expected checksum (object hash, hex); refused unless it matches the object' -r
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from register" -s R -l repo -d 'Repository directory (default: $ARCH_REPO, else the current directory or a parent)' -r -F
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from register" -l public -d 'Make the image public'
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from register" -l private -d 'Make the image private (the default for new images)'
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from register" -l snapshot -d 'Register directly as a snapshot (EXCLUDE_ALL_TASKS=yes, no customization on clone)'
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from register" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from register" -s q -l quiet -d 'Print nothing but data and errors'
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from register" -l no-progress -d 'Never show progress bars'
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from register" -s h -l help -d 'Print help'
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from register" -s V -l version -d 'Print version'
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from unregister" -s R -l repo -d 'Repository directory (default: $ARCH_REPO, else the current directory or a parent)' -r -F
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from unregister" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from unregister" -s q -l quiet -d 'Print nothing but data and errors'
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from unregister" -l no-progress -d 'Never show progress bars'
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from unregister" -s h -l help -d 'Print help'
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from unregister" -s V -l version -d 'Print version'
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from ls" -l property -d 'Only those whose property KEY equals VALUE (repeatable; keys are case-insensitive)' -r
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from ls" -l status -d 'Only those with this status (saving, creating, available, error)' -r
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from ls" -l from-volume -d 'Only the snapshots taken from volume VOLUME (and images made of them; --snapshots for snapshots only)' -r
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from ls" -s R -l repo -d 'Repository directory (default: $ARCH_REPO, else the current directory or a parent)' -r -F
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from ls" -l snapshots -d 'List snapshots instead of images'
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from ls" -l all -d 'List images and snapshots'
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from ls" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from ls" -s q -l quiet -d 'Print nothing but data and errors'
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from ls" -l no-progress -d 'Never show progress bars'
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from ls" -s h -l help -d 'Print help'
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from ls" -s V -l version -d 'Print version'
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from info" -s R -l repo -d 'Repository directory (default: $ARCH_REPO, else the current directory or a parent)' -r -F
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from info" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from info" -s q -l quiet -d 'Print nothing but data and errors'
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from info" -l no-progress -d 'Never show progress bars'
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from info" -s h -l help -d 'Print help'
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from info" -s V -l version -d 'Print version'
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from modify" -l name -d 'New display name' -r
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from modify" -s p -l property -d 'Set property KEY=VALUE (repeatable)' -r
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from modify" -l property-del -d 'Delete property KEY (repeatable)' -r
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from modify" -s R -l repo -d 'Repository directory (default: $ARCH_REPO, else the current directory or a parent)' -r -F
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from modify" -l public -d 'Make the image public'
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from modify" -l private -d 'Make the image private'
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from modify" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from modify" -s q -l quiet -d 'Print nothing but data and errors'
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from modify" -l no-progress -d 'Never show progress bars'
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from modify" -s h -l help -d 'Print help'
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from modify" -s V -l version -d 'Print version'
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from mark" -s R -l repo -d 'Repository directory (default: $ARCH_REPO, else the current directory or a parent)' -r -F
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from mark" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from mark" -s q -l quiet -d 'Print nothing but data and errors'
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from mark" -l no-progress -d 'Never show progress bars'
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from mark" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from mark" -s V -l version -d 'Print version'
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from help" -f -a "register" -d 'Register the object NAME as an image (id = object uuid, checksum = object hash). Registering again updates the same image. Only metadata is written'
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from help" -f -a "unregister" -d 'Remove the image registration; the object stays, byte-identical'
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from help" -f -a "ls" -d 'List registered images (snapshots with --snapshots, both with --all)'
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from help" -f -a "info" -d 'Show an image or snapshot'
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from help" -f -a "modify" -d 'Change an image\'s display name, properties or visibility'
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from help" -f -a "mark" -d 'Turn an image into a snapshot or a snapshot back into an image (metadata only)'
complete -c arch -n "__fish_arch_using_subcommand image; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c arch -n "__fish_arch_using_subcommand clone" -l size -d 'Size of the volume (default: the source\'s size; never smaller). E.g. 20G' -r
complete -c arch -n "__fish_arch_using_subcommand clone" -l version -d 'Clone version N of the source object instead of its current one (see `arch history`)' -r
complete -c arch -n "__fish_arch_using_subcommand clone" -l hostname -d 'Host name for /etc/hostname and the 127.0.1.1 line of /etc/hosts' -r
complete -c arch -n "__fish_arch_using_subcommand clone" -l password-file -d 'Read the password for the USERS (default root) from the first line of FILE' -r -F
complete -c arch -n "__fish_arch_using_subcommand clone" -l password -d 'The password itself (visible to other local users in the process list: prefer --password-file)' -r
complete -c arch -n "__fish_arch_using_subcommand clone" -l ssh-key -d 'Public key file appended to ~/.ssh/authorized_keys of the USERS (repeatable)' -r -F
complete -c arch -n "__fish_arch_using_subcommand clone" -l file -d 'Inject LOCAL as GUEST_PATH with MODE (octal, default 0644), OWNER and GROUP (default root) (repeatable)' -r
complete -c arch -n "__fish_arch_using_subcommand clone" -s R -l repo -d 'Repository directory (default: $ARCH_REPO, else the current directory or a parent)' -r -F
complete -c arch -n "__fish_arch_using_subcommand clone" -l no-customize -d 'Do not customize a clone of an Image'
complete -c arch -n "__fish_arch_using_subcommand clone" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c arch -n "__fish_arch_using_subcommand clone" -s q -l quiet -d 'Print nothing but data and errors'
complete -c arch -n "__fish_arch_using_subcommand clone" -l no-progress -d 'Never show progress bars'
complete -c arch -n "__fish_arch_using_subcommand clone" -s h -l help -d 'Print help'
complete -c arch -n "__fish_arch_using_subcommand snapshot" -l container -d 'Container of the snapshot object when NAME has no `/` [default: snapshots]' -r
complete -c arch -n "__fish_arch_using_subcommand snapshot" -s R -l repo -d 'Repository directory (default: $ARCH_REPO, else the current directory or a parent)' -r -F
complete -c arch -n "__fish_arch_using_subcommand snapshot" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c arch -n "__fish_arch_using_subcommand snapshot" -s q -l quiet -d 'Print nothing but data and errors'
complete -c arch -n "__fish_arch_using_subcommand snapshot" -l no-progress -d 'Never show progress bars'
complete -c arch -n "__fish_arch_using_subcommand snapshot" -s h -l help -d 'Print help'
complete -c arch -n "__fish_arch_using_subcommand snapshot" -s V -l version -d 'Print version'
complete -c arch -n "__fish_arch_using_subcommand serve" -l socket -d 'Unix socket to listen on (default: REPO/run/arch-serve-PID.sock, mode 0600)' -r -F
complete -c arch -n "__fish_arch_using_subcommand serve" -l tcp -d 'Listen on TCP instead: PORT or HOST:PORT (host defaults to 127.0.0.1; port 0 picks one)' -r
complete -c arch -n "__fish_arch_using_subcommand serve" -l shared -d 'Clients served at once (more wait until one leaves, as with qemu-nbd); flushes cover every client\'s writes' -r
complete -c arch -n "__fish_arch_using_subcommand serve" -l handshake-limit -d 'Seconds a client may take to choose an export (and a control request to arrive) before it is dropped, as qemu-nbd\'s --handshake-limit' -r
complete -c arch -n "__fish_arch_using_subcommand serve" -s R -l repo -d 'Repository directory (default: $ARCH_REPO, else the current directory or a parent)' -r -F
complete -c arch -n "__fish_arch_using_subcommand serve" -l read-only -d 'Serve volumes read-only too (other readers and writers then wait as for `volume read`)'
complete -c arch -n "__fish_arch_using_subcommand serve" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c arch -n "__fish_arch_using_subcommand serve" -s q -l quiet -d 'Print nothing but data and errors'
complete -c arch -n "__fish_arch_using_subcommand serve" -l no-progress -d 'Never show progress bars'
complete -c arch -n "__fish_arch_using_subcommand serve" -s h -l help -d 'Print help'
complete -c arch -n "__fish_arch_using_subcommand serve" -s V -l version -d 'Print version'
complete -c arch -n "__fish_arch_using_subcommand volume; and not __fish_seen_subcommand_from write read ls info rm rename resize export import rollback help" -s R -l repo -d 'Repository directory (default: $ARCH_REPO, else the current directory or a parent)' -r -F
complete -c arch -n "__fish_arch_using_subcommand volume; and not __fish_seen_subcommand_from write read ls info rm rename resize export import rollback help" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c arch -n "__fish_arch_using_subcommand volume; and not __fish_seen_subcommand_from write read ls info rm rename resize export import rollback help" -s q -l quiet -d 'Print nothing but data and errors'
complete -c arch -n "__fish_arch_using_subcommand volume; and not __fish_seen_subcommand_from write read ls info rm rename resize export import rollback help" -l no-progress -d 'Never show progress bars'
complete -c arch -n "__fish_arch_using_subcommand volume; and not __fish_seen_subcommand_from write read ls info rm rename resize export import rollback help" -s h -l help -d 'Print help'
complete -c arch -n "__fish_arch_using_subcommand volume; and not __fish_seen_subcommand_from write read ls info rm rename resize export import rollback help" -s V -l version -d 'Print version'
complete -c arch -n "__fish_arch_using_subcommand volume; and not __fish_seen_subcommand_from write read ls info rm rename resize export import rollback help" -f -a "write" -d 'Write SRC (a file, `-` or stdin by default) into VOLUME at OFFSET, copy-on-write'
complete -c arch -n "__fish_arch_using_subcommand volume; and not __fish_seen_subcommand_from write read ls info rm rename resize export import rollback help" -f -a "read" -d 'Read LENGTH bytes of VOLUME at OFFSET to stdout or FILE'
complete -c arch -n "__fish_arch_using_subcommand volume; and not __fish_seen_subcommand_from write read ls info rm rename resize export import rollback help" -f -a "ls" -d 'List volumes with their size, source and private block count'
complete -c arch -n "__fish_arch_using_subcommand volume; and not __fish_seen_subcommand_from write read ls info rm rename resize export import rollback help" -f -a "info" -d 'Show a volume: size, source, private/shared/zero blocks, customization, times'
complete -c arch -n "__fish_arch_using_subcommand volume; and not __fish_seen_subcommand_from write read ls info rm rename resize export import rollback help" -f -a "rm" -d 'Remove a volume and free its private blocks (shared blocks are left to `arch gc`)'
complete -c arch -n "__fish_arch_using_subcommand volume; and not __fish_seen_subcommand_from write read ls info rm rename resize export import rollback help" -f -a "rename" -d 'Rename a volume (metadata only: its data, id and snapshots stay)'
complete -c arch -n "__fish_arch_using_subcommand volume; and not __fish_seen_subcommand_from write read ls info rm rename resize export import rollback help" -f -a "resize" -d 'Grow a volume (the new tail reads as zeros); shrinking needs --allow-shrink'
complete -c arch -n "__fish_arch_using_subcommand volume; and not __fish_seen_subcommand_from write read ls info rm rename resize export import rollback help" -f -a "export" -d 'Write a volume to FILE (or stdout with `-o -`): raw (sparse, zero blocks as holes), or qcow2, vmdk, vdi, vhdx through qemu-img. Without --format, FILE\'s extension chooses'
complete -c arch -n "__fish_arch_using_subcommand volume; and not __fish_seen_subcommand_from write read ls info rm rename resize export import rollback help" -f -a "import" -d 'Import a disk image as a new volume (raw natively; qcow2, vmdk, vdi... through qemu-img)'
complete -c arch -n "__fish_arch_using_subcommand volume; and not __fish_seen_subcommand_from write read ls info rm rename resize export import rollback help" -f -a "rollback" -d 'Put VOL back to SNAPSHOT: its content and size become the snapshot\'s and every block written since is dropped (metadata and private-block deletion only, one atomic commit). SNAPSHOT must have been taken from VOL unless --force. Refused while VOL is served or in use by another arch process'
complete -c arch -n "__fish_arch_using_subcommand volume; and not __fish_seen_subcommand_from write read ls info rm rename resize export import rollback help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from write" -l offset -d 'Byte offset (suffixes K, M, G... allowed)' -r
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from write" -s R -l repo -d 'Repository directory (default: $ARCH_REPO, else the current directory or a parent)' -r -F
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from write" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from write" -s q -l quiet -d 'Print nothing but data and errors'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from write" -l no-progress -d 'Never show progress bars'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from write" -s h -l help -d 'Print help'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from write" -s V -l version -d 'Print version'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from read" -l offset -d 'Byte offset' -r
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from read" -l length -d 'Bytes to read (default: to the end of the volume)' -r
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from read" -s o -l output -d 'Write to FILE (atomically) instead of stdout (`-o -` is stdout too)' -r -F
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from read" -s R -l repo -d 'Repository directory (default: $ARCH_REPO, else the current directory or a parent)' -r -F
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from read" -l force -d 'Replace an existing FILE'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from read" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from read" -s q -l quiet -d 'Print nothing but data and errors'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from read" -l no-progress -d 'Never show progress bars'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from read" -s h -l help -d 'Print help'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from read" -s V -l version -d 'Print version'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from ls" -s R -l repo -d 'Repository directory (default: $ARCH_REPO, else the current directory or a parent)' -r -F
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from ls" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from ls" -s q -l quiet -d 'Print nothing but data and errors'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from ls" -l no-progress -d 'Never show progress bars'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from ls" -s h -l help -d 'Print help'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from ls" -s V -l version -d 'Print version'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from info" -s R -l repo -d 'Repository directory (default: $ARCH_REPO, else the current directory or a parent)' -r -F
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from info" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from info" -s q -l quiet -d 'Print nothing but data and errors'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from info" -l no-progress -d 'Never show progress bars'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from info" -s h -l help -d 'Print help'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from info" -s V -l version -d 'Print version'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from rm" -s R -l repo -d 'Repository directory (default: $ARCH_REPO, else the current directory or a parent)' -r -F
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from rm" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from rm" -s q -l quiet -d 'Print nothing but data and errors'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from rm" -l no-progress -d 'Never show progress bars'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from rm" -s h -l help -d 'Print help'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from rm" -s V -l version -d 'Print version'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from rename" -s R -l repo -d 'Repository directory (default: $ARCH_REPO, else the current directory or a parent)' -r -F
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from rename" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from rename" -s q -l quiet -d 'Print nothing but data and errors'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from rename" -l no-progress -d 'Never show progress bars'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from rename" -s h -l help -d 'Print help'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from rename" -s V -l version -d 'Print version'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from resize" -s R -l repo -d 'Repository directory (default: $ARCH_REPO, else the current directory or a parent)' -r -F
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from resize" -l allow-shrink -d 'Allow a smaller size (drops the data past it)'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from resize" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from resize" -s q -l quiet -d 'Print nothing but data and errors'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from resize" -l no-progress -d 'Never show progress bars'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from resize" -s h -l help -d 'Print help'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from resize" -s V -l version -d 'Print version'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from export" -s o -l output -d 'Output file (written atomically), or `-` for stdout' -r -F
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from export" -l format -d 'Output format [default: from FILE\'s extension: .qcow2, .vmdk, .vdi, .vhdx; raw for .raw, .img, any other extension and stdout]' -r -f -a "raw\t''
qcow2\t''
vmdk\t''
vdi\t''
vhdx\t''"
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from export" -s R -l repo -d 'Repository directory (default: $ARCH_REPO, else the current directory or a parent)' -r -F
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from export" -l force -d 'Replace an existing FILE'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from export" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from export" -s q -l quiet -d 'Print nothing but data and errors'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from export" -l no-progress -d 'Never show progress bars'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from export" -s h -l help -d 'Print help'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from export" -s V -l version -d 'Print version'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from import" -l format -d 'Input format (default: detected by qemu-img; without qemu-img, raw, and a file with another format\'s magic is refused). `raw` imports the file\'s bytes as they are' -r
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from import" -s R -l repo -d 'Repository directory (default: $ARCH_REPO, else the current directory or a parent)' -r -F
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from import" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from import" -s q -l quiet -d 'Print nothing but data and errors'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from import" -l no-progress -d 'Never show progress bars'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from import" -s h -l help -d 'Print help'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from import" -s V -l version -d 'Print version'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from rollback" -s R -l repo -d 'Repository directory (default: $ARCH_REPO, else the current directory or a parent)' -r -F
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from rollback" -l force -d 'Accept a snapshot that was not taken from VOL (any object of the repository)'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from rollback" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from rollback" -s q -l quiet -d 'Print nothing but data and errors'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from rollback" -l no-progress -d 'Never show progress bars'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from rollback" -s h -l help -d 'Print help'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from rollback" -s V -l version -d 'Print version'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from help" -f -a "write" -d 'Write SRC (a file, `-` or stdin by default) into VOLUME at OFFSET, copy-on-write'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from help" -f -a "read" -d 'Read LENGTH bytes of VOLUME at OFFSET to stdout or FILE'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from help" -f -a "ls" -d 'List volumes with their size, source and private block count'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from help" -f -a "info" -d 'Show a volume: size, source, private/shared/zero blocks, customization, times'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from help" -f -a "rm" -d 'Remove a volume and free its private blocks (shared blocks are left to `arch gc`)'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from help" -f -a "rename" -d 'Rename a volume (metadata only: its data, id and snapshots stay)'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from help" -f -a "resize" -d 'Grow a volume (the new tail reads as zeros); shrinking needs --allow-shrink'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from help" -f -a "export" -d 'Write a volume to FILE (or stdout with `-o -`): raw (sparse, zero blocks as holes), or qcow2, vmdk, vdi, vhdx through qemu-img. Without --format, FILE\'s extension chooses'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from help" -f -a "import" -d 'Import a disk image as a new volume (raw natively; qcow2, vmdk, vdi... through qemu-img)'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from help" -f -a "rollback" -d 'Put VOL back to SNAPSHOT: its content and size become the snapshot\'s and every block written since is dropped (metadata and private-block deletion only, one atomic commit). SNAPSHOT must have been taken from VOL unless --force. Refused while VOL is served or in use by another arch process'
complete -c arch -n "__fish_arch_using_subcommand volume; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c arch -n "__fish_arch_using_subcommand customize" -l hostname -d 'Host name for /etc/hostname and the 127.0.1.1 line of /etc/hosts' -r
complete -c arch -n "__fish_arch_using_subcommand customize" -l password-file -d 'Read the password for the USERS (default root) from the first line of FILE' -r -F
complete -c arch -n "__fish_arch_using_subcommand customize" -l password -d 'The password itself (visible to other local users in the process list: prefer --password-file)' -r
complete -c arch -n "__fish_arch_using_subcommand customize" -l ssh-key -d 'Public key file appended to ~/.ssh/authorized_keys of the USERS (repeatable)' -r -F
complete -c arch -n "__fish_arch_using_subcommand customize" -l file -d 'Inject LOCAL as GUEST_PATH with MODE (octal, default 0644), OWNER and GROUP (default root) (repeatable)' -r
complete -c arch -n "__fish_arch_using_subcommand customize" -s R -l repo -d 'Repository directory (default: $ARCH_REPO, else the current directory or a parent)' -r -F
complete -c arch -n "__fish_arch_using_subcommand customize" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c arch -n "__fish_arch_using_subcommand customize" -s q -l quiet -d 'Print nothing but data and errors'
complete -c arch -n "__fish_arch_using_subcommand customize" -l no-progress -d 'Never show progress bars'
complete -c arch -n "__fish_arch_using_subcommand customize" -s h -l help -d 'Print help'
complete -c arch -n "__fish_arch_using_subcommand customize" -s V -l version -d 'Print version'
complete -c arch -n "__fish_arch_using_subcommand send" -l base -d 'A resource the receiver already has (repeatable): its blocks are not sent' -r
complete -c arch -n "__fish_arch_using_subcommand send" -s o -l output -d 'Output file, or - for stdout (the default). Written to a temporary name and renamed when complete' -r -F
complete -c arch -n "__fish_arch_using_subcommand send" -s R -l repo -d 'Repository directory (default: $ARCH_REPO, else the current directory or a parent)' -r -F
complete -c arch -n "__fish_arch_using_subcommand send" -l force -d 'Replace FILE if it exists'
complete -c arch -n "__fish_arch_using_subcommand send" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c arch -n "__fish_arch_using_subcommand send" -s q -l quiet -d 'Print nothing but data and errors'
complete -c arch -n "__fish_arch_using_subcommand send" -l no-progress -d 'Never show progress bars'
complete -c arch -n "__fish_arch_using_subcommand send" -s h -l help -d 'Print help'
complete -c arch -n "__fish_arch_using_subcommand send" -s V -l version -d 'Print version'
complete -c arch -n "__fish_arch_using_subcommand receive" -l rename -d 'Receive the resource named OLD in the stream as NEW (repeatable)' -r
complete -c arch -n "__fish_arch_using_subcommand receive" -s R -l repo -d 'Repository directory (default: $ARCH_REPO, else the current directory or a parent)' -r -F
complete -c arch -n "__fish_arch_using_subcommand receive" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c arch -n "__fish_arch_using_subcommand receive" -s q -l quiet -d 'Print nothing but data and errors'
complete -c arch -n "__fish_arch_using_subcommand receive" -l no-progress -d 'Never show progress bars'
complete -c arch -n "__fish_arch_using_subcommand receive" -s h -l help -d 'Print help'
complete -c arch -n "__fish_arch_using_subcommand receive" -s V -l version -d 'Print version'
complete -c arch -n "__fish_arch_using_subcommand copy" -l to -d 'The destination repository' -r -F
complete -c arch -n "__fish_arch_using_subcommand copy" -l rename -d 'Create the resource named OLD as NEW in the destination (repeatable)' -r
complete -c arch -n "__fish_arch_using_subcommand copy" -s R -l repo -d 'Repository directory (default: $ARCH_REPO, else the current directory or a parent)' -r -F
complete -c arch -n "__fish_arch_using_subcommand copy" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c arch -n "__fish_arch_using_subcommand copy" -s q -l quiet -d 'Print nothing but data and errors'
complete -c arch -n "__fish_arch_using_subcommand copy" -l no-progress -d 'Never show progress bars'
complete -c arch -n "__fish_arch_using_subcommand copy" -s h -l help -d 'Print help'
complete -c arch -n "__fish_arch_using_subcommand copy" -s V -l version -d 'Print version'
complete -c arch -n "__fish_arch_using_subcommand diff" -s R -l repo -d 'Repository directory (default: $ARCH_REPO, else the current directory or a parent)' -r -F
complete -c arch -n "__fish_arch_using_subcommand diff" -l stat -d 'Print only counts and bytes'
complete -c arch -n "__fish_arch_using_subcommand diff" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c arch -n "__fish_arch_using_subcommand diff" -s q -l quiet -d 'Print nothing but data and errors'
complete -c arch -n "__fish_arch_using_subcommand diff" -l no-progress -d 'Never show progress bars'
complete -c arch -n "__fish_arch_using_subcommand diff" -s h -l help -d 'Print help'
complete -c arch -n "__fish_arch_using_subcommand diff" -s V -l version -d 'Print version'
complete -c arch -n "__fish_arch_using_subcommand generate; and not __fish_seen_subcommand_from completions man help" -s R -l repo -d 'Repository directory (default: $ARCH_REPO, else the current directory or a parent)' -r -F
complete -c arch -n "__fish_arch_using_subcommand generate; and not __fish_seen_subcommand_from completions man help" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c arch -n "__fish_arch_using_subcommand generate; and not __fish_seen_subcommand_from completions man help" -s q -l quiet -d 'Print nothing but data and errors'
complete -c arch -n "__fish_arch_using_subcommand generate; and not __fish_seen_subcommand_from completions man help" -l no-progress -d 'Never show progress bars'
complete -c arch -n "__fish_arch_using_subcommand generate; and not __fish_seen_subcommand_from completions man help" -s h -l help -d 'Print help'
complete -c arch -n "__fish_arch_using_subcommand generate; and not __fish_seen_subcommand_from completions man help" -s V -l version -d 'Print version'
complete -c arch -n "__fish_arch_using_subcommand generate; and not __fish_seen_subcommand_from completions man help" -f -a "completions" -d 'bash (`arch.bash`), zsh (`_arch`) and fish (`arch.fish`) completions into DIR'
complete -c arch -n "__fish_arch_using_subcommand generate; and not __fish_seen_subcommand_from completions man help" -f -a "man" -d '`arch.1` and one page per subcommand (`arch-image-register.1`, ...) into DIR'
complete -c arch -n "__fish_arch_using_subcommand generate; and not __fish_seen_subcommand_from completions man help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c arch -n "__fish_arch_using_subcommand generate; and __fish_seen_subcommand_from completions" -s R -l repo -d 'Repository directory (default: $ARCH_REPO, else the current directory or a parent)' -r -F
complete -c arch -n "__fish_arch_using_subcommand generate; and __fish_seen_subcommand_from completions" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c arch -n "__fish_arch_using_subcommand generate; and __fish_seen_subcommand_from completions" -s q -l quiet -d 'Print nothing but data and errors'
complete -c arch -n "__fish_arch_using_subcommand generate; and __fish_seen_subcommand_from completions" -l no-progress -d 'Never show progress bars'
complete -c arch -n "__fish_arch_using_subcommand generate; and __fish_seen_subcommand_from completions" -s h -l help -d 'Print help'
complete -c arch -n "__fish_arch_using_subcommand generate; and __fish_seen_subcommand_from completions" -s V -l version -d 'Print version'
complete -c arch -n "__fish_arch_using_subcommand generate; and __fish_seen_subcommand_from man" -s R -l repo -d 'Repository directory (default: $ARCH_REPO, else the current directory or a parent)' -r -F
complete -c arch -n "__fish_arch_using_subcommand generate; and __fish_seen_subcommand_from man" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c arch -n "__fish_arch_using_subcommand generate; and __fish_seen_subcommand_from man" -s q -l quiet -d 'Print nothing but data and errors'
complete -c arch -n "__fish_arch_using_subcommand generate; and __fish_seen_subcommand_from man" -l no-progress -d 'Never show progress bars'
complete -c arch -n "__fish_arch_using_subcommand generate; and __fish_seen_subcommand_from man" -s h -l help -d 'Print help'
complete -c arch -n "__fish_arch_using_subcommand generate; and __fish_seen_subcommand_from man" -s V -l version -d 'Print version'
complete -c arch -n "__fish_arch_using_subcommand generate; and __fish_seen_subcommand_from help" -f -a "completions" -d 'bash (`arch.bash`), zsh (`_arch`) and fish (`arch.fish`) completions into DIR'
complete -c arch -n "__fish_arch_using_subcommand generate; and __fish_seen_subcommand_from help" -f -a "man" -d '`arch.1` and one page per subcommand (`arch-image-register.1`, ...) into DIR'
complete -c arch -n "__fish_arch_using_subcommand generate; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c arch -n "__fish_arch_using_subcommand complete" -s R -l repo -d 'Repository directory (default: $ARCH_REPO, else the current directory or a parent)' -r -F
complete -c arch -n "__fish_arch_using_subcommand complete" -l json -d 'Print one JSON document on stdout instead of tables'
complete -c arch -n "__fish_arch_using_subcommand complete" -s q -l quiet -d 'Print nothing but data and errors'
complete -c arch -n "__fish_arch_using_subcommand complete" -l no-progress -d 'Never show progress bars'
complete -c arch -n "__fish_arch_using_subcommand complete" -s h -l help -d 'Print help'
complete -c arch -n "__fish_arch_using_subcommand complete" -s V -l version -d 'Print version'
complete -c arch -n "__fish_arch_using_subcommand help; and not __fish_seen_subcommand_from init put get ls info meta cp mv rm hashmap history restore prune-versions fsck gc du image clone snapshot serve volume customize send receive copy diff generate complete help" -f -a "init" -d 'Create a repository in DIR (created if missing; must be empty)'
complete -c arch -n "__fish_arch_using_subcommand help; and not __fish_seen_subcommand_from init put get ls info meta cp mv rm hashmap history restore prune-versions fsck gc du image clone snapshot serve volume customize send receive copy diff generate complete help" -f -a "put" -d 'Store a file (or stdin with `-`) as object NAME. Over an existing object: a new version that keeps the uuid, creation time and image registration, and replaces the data, content type and user metadata (the previous version stays in `arch history`)'
complete -c arch -n "__fish_arch_using_subcommand help; and not __fish_seen_subcommand_from init put get ls info meta cp mv rm hashmap history restore prune-versions fsck gc du image clone snapshot serve volume customize send receive copy diff generate complete help" -f -a "get" -d 'Write object NAME to stdout or to a file (zero blocks become holes in a file)'
complete -c arch -n "__fish_arch_using_subcommand help; and not __fish_seen_subcommand_from init put get ls info meta cp mv rm hashmap history restore prune-versions fsck gc du image clone snapshot serve volume customize send receive copy diff generate complete help" -f -a "ls" -d 'List containers (no argument) or the objects of CONTAINER whose names start with PREFIX'
complete -c arch -n "__fish_arch_using_subcommand help; and not __fish_seen_subcommand_from init put get ls info meta cp mv rm hashmap history restore prune-versions fsck gc du image clone snapshot serve volume customize send receive copy diff generate complete help" -f -a "info" -d 'Show an object\'s system fields, user metadata and image/snapshot view; without NAME, the repository'
complete -c arch -n "__fish_arch_using_subcommand help; and not __fish_seen_subcommand_from init put get ls info meta cp mv rm hashmap history restore prune-versions fsck gc du image clone snapshot serve volume customize send receive copy diff generate complete help" -f -a "meta" -d 'Show or change an object\'s user metadata (an empty value deletes a key)'
complete -c arch -n "__fish_arch_using_subcommand help; and not __fish_seen_subcommand_from init put get ls info meta cp mv rm hashmap history restore prune-versions fsck gc du image clone snapshot serve volume customize send receive copy diff generate complete help" -f -a "cp" -d 'Copy object SRC to DST: a new uuid, the same blocks, no data copied'
complete -c arch -n "__fish_arch_using_subcommand help; and not __fish_seen_subcommand_from init put get ls info meta cp mv rm hashmap history restore prune-versions fsck gc du image clone snapshot serve volume customize send receive copy diff generate complete help" -f -a "mv" -d 'Move object SRC to DST, keeping its uuid and image registration'
complete -c arch -n "__fish_arch_using_subcommand help; and not __fish_seen_subcommand_from init put get ls info meta cp mv rm hashmap history restore prune-versions fsck gc du image clone snapshot serve volume customize send receive copy diff generate complete help" -f -a "rm" -d 'Remove object NAME (with any image registration). Space is reclaimed by `arch gc`'
complete -c arch -n "__fish_arch_using_subcommand help; and not __fish_seen_subcommand_from init put get ls info meta cp mv rm hashmap history restore prune-versions fsck gc du image clone snapshot serve volume customize send receive copy diff generate complete help" -f -a "hashmap" -d 'Print the Pithos hashmap of NAME (`{"block_hash","block_size","bytes","hashes"}`)'
complete -c arch -n "__fish_arch_using_subcommand help; and not __fish_seen_subcommand_from init put get ls info meta cp mv rm hashmap history restore prune-versions fsck gc du image clone snapshot serve volume customize send receive copy diff generate complete help" -f -a "history" -d 'List the kept versions of NAME, newest first (version, size, hash, modified, content type)'
complete -c arch -n "__fish_arch_using_subcommand help; and not __fish_seen_subcommand_from init put get ls info meta cp mv rm hashmap history restore prune-versions fsck gc du image clone snapshot serve volume customize send receive copy diff generate complete help" -f -a "restore" -d 'Make version N of NAME its current content and metadata again, as a new version (no block is copied)'
complete -c arch -n "__fish_arch_using_subcommand help; and not __fish_seen_subcommand_from init put get ls info meta cp mv rm hashmap history restore prune-versions fsck gc du image clone snapshot serve volume customize send receive copy diff generate complete help" -f -a "prune-versions" -d 'Remove old versions of objects (all objects, or the NAMEs given); current versions are always kept. Space is reclaimed by `arch gc`'
complete -c arch -n "__fish_arch_using_subcommand help; and not __fish_seen_subcommand_from init put get ls info meta cp mv rm hashmap history restore prune-versions fsck gc du image clone snapshot serve volume customize send receive copy diff generate complete help" -f -a "fsck" -d 'Check that every resource\'s map and blocks are present (and intact with --read-data)'
complete -c arch -n "__fish_arch_using_subcommand help; and not __fish_seen_subcommand_from init put get ls info meta cp mv rm hashmap history restore prune-versions fsck gc du image clone snapshot serve volume customize send receive copy diff generate complete help" -f -a "gc" -d 'Free the space of deleted objects and volumes, superseded versions and dropped blocks'
complete -c arch -n "__fish_arch_using_subcommand help; and not __fish_seen_subcommand_from init put get ls info meta cp mv rm hashmap history restore prune-versions fsck gc du image clone snapshot serve volume customize send receive copy diff generate complete help" -f -a "du" -d 'Show space use: per resource and for the whole repository, with the deduplication ratio'
complete -c arch -n "__fish_arch_using_subcommand help; and not __fish_seen_subcommand_from init put get ls info meta cp mv rm hashmap history restore prune-versions fsck gc du image clone snapshot serve volume customize send receive copy diff generate complete help" -f -a "image" -d 'Register objects as images or snapshots and manage their metadata (metadata only: no data is ever copied)'
complete -c arch -n "__fish_arch_using_subcommand help; and not __fish_seen_subcommand_from init put get ls info meta cp mv rm hashmap history restore prune-versions fsck gc du image clone snapshot serve volume customize send receive copy diff generate complete help" -f -a "clone" -d 'Create volume VOLUME as a thin clone of SOURCE (an object name, or an image/snapshot REF). Only metadata is written; the clone shares every block with its source. A clone of an Image (not a Snapshot, not a plain object) is then customized offline'
complete -c arch -n "__fish_arch_using_subcommand help; and not __fish_seen_subcommand_from init put get ls info meta cp mv rm hashmap history restore prune-versions fsck gc du image clone snapshot serve volume customize send receive copy diff generate complete help" -f -a "snapshot" -d 'Freeze VOLUME\'s current content as a Snapshot object: NAME in CONTAINER (default `snapshots/`), or NAME itself when it holds a `/` (`container/object`). Only blocks written since the last snapshot are hashed; the volume stays writable'
complete -c arch -n "__fish_arch_using_subcommand help; and not __fish_seen_subcommand_from init put get ls info meta cp mv rm hashmap history restore prune-versions fsck gc du image clone snapshot serve volume customize send receive copy diff generate complete help" -f -a "serve" -d 'Serve volumes and read-only resources over NBD (to QEMU, qemu-img, nbdcopy, nbd-client). A volume is served read-write (copy-on-write into the repository); objects, images and snapshots read-only. Writes are durable once a FLUSH (or FUA) is answered'
complete -c arch -n "__fish_arch_using_subcommand help; and not __fish_seen_subcommand_from init put get ls info meta cp mv rm hashmap history restore prune-versions fsck gc du image clone snapshot serve volume customize send receive copy diff generate complete help" -f -a "volume" -d 'Read, write, list, inspect, rename, resize, remove, import and export volumes'
complete -c arch -n "__fish_arch_using_subcommand help; and not __fish_seen_subcommand_from init put get ls info meta cp mv rm hashmap history restore prune-versions fsck gc du image clone snapshot serve volume customize send receive copy diff generate complete help" -f -a "customize" -d 'Run the customization tasks (partition and filesystem growth, hostname, machine id, passwords, SSH keys, files) on a volume, offline and without root'
complete -c arch -n "__fish_arch_using_subcommand help; and not __fish_seen_subcommand_from init put get ls info meta cp mv rm hashmap history restore prune-versions fsck gc du image clone snapshot serve volume customize send receive copy diff generate complete help" -f -a "send" -d 'Write objects, images, snapshots and volumes as one self-contained stream (stdout by default) that `arch receive` applies elsewhere. With --base, blocks the base resources hold are left out: the receiver must have received those bases'
complete -c arch -n "__fish_arch_using_subcommand help; and not __fish_seen_subcommand_from init put get ls info meta cp mv rm hashmap history restore prune-versions fsck gc du image clone snapshot serve volume customize send receive copy diff generate complete help" -f -a "receive" -d 'Apply a stream written by `arch send`: every block is verified against its hash and the trailer checksum is checked before anything becomes visible; then the resources appear in one catalog commit. Blocks already present are not written again'
complete -c arch -n "__fish_arch_using_subcommand help; and not __fish_seen_subcommand_from init put get ls info meta cp mv rm hashmap history restore prune-versions fsck gc du image clone snapshot serve volume customize send receive copy diff generate complete help" -f -a "copy" -d 'Copy objects, images, snapshots and volumes into another repository. Each block the destination lacks is sent once; the destination checks the stream as `arch receive` does and adds the resources in one commit (all or nothing)'
complete -c arch -n "__fish_arch_using_subcommand help; and not __fish_seen_subcommand_from init put get ls info meta cp mv rm hashmap history restore prune-versions fsck gc du image clone snapshot serve volume customize send receive copy diff generate complete help" -f -a "diff" -d 'Show where two resources (objects, images, snapshots, volumes, or NAME@N versions) differ, block by block, from their maps: shared data is never read. Like `rbd diff`: offset, length and type (`data`: B holds other data; `zero`: B reads zeros there)'
complete -c arch -n "__fish_arch_using_subcommand help; and not __fish_seen_subcommand_from init put get ls info meta cp mv rm hashmap history restore prune-versions fsck gc du image clone snapshot serve volume customize send receive copy diff generate complete help" -f -a "generate" -d 'Generate shell completions or man pages (for packagers; the results are committed)'
complete -c arch -n "__fish_arch_using_subcommand help; and not __fish_seen_subcommand_from init put get ls info meta cp mv rm hashmap history restore prune-versions fsck gc du image clone snapshot serve volume customize send receive copy diff generate complete help" -f -a "complete" -d 'Print the repository names that complete the last of WORDS (the words after `arch`, the one being completed last, possibly empty)'
complete -c arch -n "__fish_arch_using_subcommand help; and not __fish_seen_subcommand_from init put get ls info meta cp mv rm hashmap history restore prune-versions fsck gc du image clone snapshot serve volume customize send receive copy diff generate complete help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c arch -n "__fish_arch_using_subcommand help; and __fish_seen_subcommand_from image" -f -a "register" -d 'Register the object NAME as an image (id = object uuid, checksum = object hash). Registering again updates the same image. Only metadata is written'
complete -c arch -n "__fish_arch_using_subcommand help; and __fish_seen_subcommand_from image" -f -a "unregister" -d 'Remove the image registration; the object stays, byte-identical'
complete -c arch -n "__fish_arch_using_subcommand help; and __fish_seen_subcommand_from image" -f -a "ls" -d 'List registered images (snapshots with --snapshots, both with --all)'
complete -c arch -n "__fish_arch_using_subcommand help; and __fish_seen_subcommand_from image" -f -a "info" -d 'Show an image or snapshot'
complete -c arch -n "__fish_arch_using_subcommand help; and __fish_seen_subcommand_from image" -f -a "modify" -d 'Change an image\'s display name, properties or visibility'
complete -c arch -n "__fish_arch_using_subcommand help; and __fish_seen_subcommand_from image" -f -a "mark" -d 'Turn an image into a snapshot or a snapshot back into an image (metadata only)'
complete -c arch -n "__fish_arch_using_subcommand help; and __fish_seen_subcommand_from volume" -f -a "write" -d 'Write SRC (a file, `-` or stdin by default) into VOLUME at OFFSET, copy-on-write'
complete -c arch -n "__fish_arch_using_subcommand help; and __fish_seen_subcommand_from volume" -f -a "read" -d 'Read LENGTH bytes of VOLUME at OFFSET to stdout or FILE'
complete -c arch -n "__fish_arch_using_subcommand help; and __fish_seen_subcommand_from volume" -f -a "ls" -d 'List volumes with their size, source and private block count'
complete -c arch -n "__fish_arch_using_subcommand help; and __fish_seen_subcommand_from volume" -f -a "info" -d 'Show a volume: size, source, private/shared/zero blocks, customization, times'
complete -c arch -n "__fish_arch_using_subcommand help; and __fish_seen_subcommand_from volume" -f -a "rm" -d 'Remove a volume and free its private blocks (shared blocks are left to `arch gc`)'
complete -c arch -n "__fish_arch_using_subcommand help; and __fish_seen_subcommand_from volume" -f -a "rename" -d 'Rename a volume (metadata only: its data, id and snapshots stay)'
complete -c arch -n "__fish_arch_using_subcommand help; and __fish_seen_subcommand_from volume" -f -a "resize" -d 'Grow a volume (the new tail reads as zeros); shrinking needs --allow-shrink'
complete -c arch -n "__fish_arch_using_subcommand help; and __fish_seen_subcommand_from volume" -f -a "export" -d 'Write a volume to FILE (or stdout with `-o -`): raw (sparse, zero blocks as holes), or qcow2, vmdk, vdi, vhdx through qemu-img. Without --format, FILE\'s extension chooses'
complete -c arch -n "__fish_arch_using_subcommand help; and __fish_seen_subcommand_from volume" -f -a "import" -d 'Import a disk image as a new volume (raw natively; qcow2, vmdk, vdi... through qemu-img)'
complete -c arch -n "__fish_arch_using_subcommand help; and __fish_seen_subcommand_from volume" -f -a "rollback" -d 'Put VOL back to SNAPSHOT: its content and size become the snapshot\'s and every block written since is dropped (metadata and private-block deletion only, one atomic commit). SNAPSHOT must have been taken from VOL unless --force. Refused while VOL is served or in use by another arch process'
complete -c arch -n "__fish_arch_using_subcommand help; and __fish_seen_subcommand_from generate" -f -a "completions" -d 'bash (`arch.bash`), zsh (`_arch`) and fish (`arch.fish`) completions into DIR'
complete -c arch -n "__fish_arch_using_subcommand help; and __fish_seen_subcommand_from generate" -f -a "man" -d '`arch.1` and one page per subcommand (`arch-image-register.1`, ...) into DIR'

# Repository names (objects, images, snapshots, volumes) from `arch complete`.
complete -c arch -n 'not string match -q -- "-*" (commandline -ct)' -a '(arch complete -- (commandline -opc)[2..-1] (commandline -ct) 2>/dev/null)'
