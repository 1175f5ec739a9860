import ArgumentParser
import Foundation

/// `lnrr wireshark`: puts lnrr's Lua dissector where Wireshark and tshark find it.
///
/// The dissector is generated from the BOLT CSVs (tools/gen-catalogue) and compiled into lnrr as a
/// string (`WiresharkDissector.lua`), so an installed lnrr needs no checkout of the repository.
struct WiresharkCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wireshark",
        abstract: "Install the Wireshark/tshark dissector for lnrr recordings, or print how to load it.",
        discussion: """
            The dissector names every Lightning message and field (lightning.type == 132, \
            lightning.open_channel.funding_satoshis > 100000, \
            lightning.init.features.option_static_remotekey), shows direction and phase \
            (lightning.direction, lightning.phase), rule and delivery notes, and lnrr's session \
            events (lnrr.event == "close"). docs/wireshark.md has recipes.

            --install writes it as lnrr-lightning.lua into Wireshark's personal Lua plugin folder \
            (what `tshark -G folders` calls "Personal Lua Plugins", usually \
            ~/.local/lib/wireshark/plugins), after which wireshark and tshark use it for every \
            recording. Restart Wireshark (or Analyze > Reload Lua Plugins) after installing.

            --print-path writes it to lnrr's cache folder ($XDG_CACHE_HOME/lnrr, else \
            ~/.cache/lnrr) and prints only that path, for one-off use without installing:
              tshark -X lua_script:$(lnrr wireshark --print-path) -r FILE.pcapng

            With neither, says whether it is installed and how to load it. --lua prints the script.
            """
    )

    @Flag(name: .long, help: "Install (or update) the dissector in Wireshark's personal Lua plugin folder.")
    var install = false

    @Flag(name: .long, help: "Write the dissector to lnrr's cache folder and print its path.")
    var printPath = false

    @Flag(name: .long, help: "Print the dissector's Lua source.")
    var lua = false

    @Option(name: .long, help: ArgumentHelp("Plugin folder to install into, instead of Wireshark's personal one.", valueName: "DIR"))
    var pluginDir: String?

    static let fileName = "lnrr-lightning.lua"
    /// The first line of every lightning.lua lnrr writes: a file without it is not ours to replace.
    static let signature = "-- lightning.lua: Wireshark/tshark dissector for lnrr recordings"

    func validate() throws {
        if [install, printPath, lua].filter({ $0 }).count > 1 {
            throw ValidationError("choose one of --install, --print-path and --lua")
        }
        if pluginDir != nil && !install {
            throw ValidationError("--plugin-dir goes with --install")
        }
    }

    func run() throws {
        if lua {
            Terminal.standardOutput.write(WiresharkDissector.lua, newline: false)
        } else if printPath {
            let path = (Self.cacheDirectory() as NSString).appendingPathComponent("lightning.lua")
            try Self.writeScript(to: path, directory: Self.cacheDirectory())
            Terminal.standardOutput.write(path)
        } else if install {
            let directory = try pluginDir ?? Self.personalPluginDirectory()
            let path = (directory as NSString).appendingPathComponent(Self.fileName)
            try Self.writeScript(to: path, directory: directory)
            Terminal.standardOutput.write(path)
            Terminal.standardError.write("installed the lnrr dissector: tshark -r FILE.pcapng now names Lightning messages "
                                         + "(restart Wireshark, or Analyze > Reload Lua Plugins)")
        } else {
            let directory = try Self.personalPluginDirectory()
            let path = (directory as NSString).appendingPathComponent(Self.fileName)
            let installed = FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) }
            let status: String
            switch installed {
            case nil: status = "not installed (Wireshark's personal Lua plugin folder is \(directory))"
            case .some(let text) where text == WiresharkDissector.lua: status = "installed and current: \(path)"
            default: status = "installed but from another lnrr version: \(path) (run `lnrr wireshark --install` to update)"
            }
            Terminal.standardOutput.write("""
                lnrr's Wireshark dissector: \(status)
                  install:   lnrr wireshark --install
                  one-off:   tshark -X lua_script:$(lnrr wireshark --print-path) -r FILE.pcapng
                """)
        }
    }

    /// Writes the script atomically (a temporary file renamed over the target), mode 0644, creating
    /// the folder if needed. Refuses to replace a file lnrr did not write.
    static func writeScript(to path: String, directory: String) throws {
        let fm = FileManager.default
        do {
            try fm.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw CLIError("cannot create \(directory): \(error.localizedDescription)", code: .failure)
        }
        if let existing = fm.contents(atPath: path), !String(decoding: existing.prefix(200), as: UTF8.self).hasPrefix(signature) {
            throw CLIError("\(path) exists and is not lnrr's dissector; move it away or choose --plugin-dir", code: .failure)
        }
        let temporary = path + ".tmp-\(getpid())"
        guard fm.createFile(atPath: temporary, contents: Data(WiresharkDissector.lua.utf8), attributes: [.posixPermissions: 0o644]) else {
            throw CLIError("cannot write \(temporary): \(String(cString: strerror(errno)))", code: .failure)
        }
        guard rename(temporary, path) == 0 else {
            let why = String(cString: strerror(errno))
            unlink(temporary)
            throw CLIError("cannot write \(path): \(why)", code: .failure)
        }
    }

    static func cacheDirectory() -> String {
        let env = ProcessInfo.processInfo.environment
        if let xdg = env["XDG_CACHE_HOME"], xdg.hasPrefix("/") { return (xdg as NSString).appendingPathComponent("lnrr") }
        return (home() as NSString).appendingPathComponent(".cache/lnrr")
    }

    /// Wireshark's personal Lua plugin folder as `tshark -G folders` reports it; Wireshark's
    /// documented default (~/.local/lib/wireshark/plugins) when tshark is not installed.
    static func personalPluginDirectory() throws -> String {
        if let reported = tsharkFolders()["Personal Lua Plugins"], !reported.isEmpty { return reported }
        return (home() as NSString).appendingPathComponent(".local/lib/wireshark/plugins")
    }

    /// $HOME, as Wireshark itself uses it; the account's home folder when unset.
    static func home() -> String {
        if let home = ProcessInfo.processInfo.environment["HOME"], !home.isEmpty { return home }
        return NSHomeDirectory()
    }

    /// `tshark -G folders` as a dictionary; empty when tshark cannot be run.
    static func tsharkFolders() -> [String: String] {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["tshark", "-G", "folders"]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { return [:] }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { return [:] }
        var folders: [String: String] = [:]
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            folders[String(line[..<colon])] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return folders
    }
}
