# Stub Vivado for tclsh: runs a generated build.tcl or package_ip.tcl without Vivado.
#
#     tclsh vivado_stub.tcl SCRIPT.tcl LOG.jsonl [ARGS...]
#
# Every Vivado command the scripts use is a proc here that appends the call (its name and evaluated
# arguments) as one JSON array to LOG and returns what a script needs to go on: object names,
# properties set earlier (set_property / get_property keep a property store), the PS's pl_clk0
# frequency from its PLL (a little below the request, as the real PS), the address segments
# assign_bd_address creates, the interfaces the wrapper's X_INTERFACE_INFO attributes declare,
# run directories with the bitstream and the hardware handoff, report files. A command not stubbed
# here is an error ("invalid command name"), so a misspelt or unexpected Vivado command fails the test.
# Environment: SPVIT_STUB_BOARD_PART (default xilinx.com:zcu102:part0:3.4; empty: no board files),
# SPVIT_STUB_WNS / SPVIT_STUB_WHS (slacks in ns, default 0.112 / 0.010).

namespace eval ipx {}
lassign $argv stub_script stub_log
set argv [lrange $argv 2 end]
set stub_fd [open $stub_log w]
array set stub_props {}
set stub_intf_nets {}
set stub_assigned {}
set stub_proj_dir ""
set stub_sources {}

proc json_str {s} {
    return "\"[string map [list \\ \\\\ \" \\\" \n \\n \t \\t] $s]\""
}
proc record {name arguments} {
    set items [list [json_str $name]]
    foreach a $arguments { lappend items [json_str $a] }
    puts $::stub_fd "\[[join $items ,]\]"
    flush $::stub_fd
}
# a stub: records the call, then runs body with the call's arguments in `args`
proc stub {name body} {
    proc $name {args} "record [list $name] \$args\n$body"
}
proc path {p} { return "/[string trimleft $p /]" }
proc env_or {name default} { expr {[info exists ::env($name)] ? $::env($name) : $default} }
proc touch {file text} {
    file mkdir [file dirname $file]
    set f [open $file w]; puts $f $text; close $f
}

# ---- project and files
stub create_project {
    set ::stub_proj_dir [lindex $args 2]
    file mkdir $::stub_proj_dir
    return [lindex $args 1]
}
stub close_project { return "" }
stub current_project { return spvit }
stub current_fileset { return sources_1 }
stub add_files {
    foreach a $args { if {[string index $a 0] ne "-" && $a ni {constrs_1}} { lappend ::stub_sources {*}$a } }
    return ""
}
stub update_compile_order { return "" }
stub get_board_parts {
    set part [env_or SPVIT_STUB_BOARD_PART xilinx.com:zcu102:part0:3.4]
    return [expr {$part ne "" && [string match [lindex $args end] $part] ? $part : ""}]
}
stub get_ipdefs { return [list xilinx.com:ip:[lindex [split [lindex $args end] :] 2]:1.0 \
                               xilinx.com:ip:[lindex [split [lindex $args end] :] 2]:3.2] }
stub version { return 2023.2-stub }

# ---- properties
stub set_property {
    set rest $args
    set pairs {}
    while {[string index [lindex $rest 0] 0] eq "-"} {
        if {[lindex $rest 0] eq "-dict"} { set pairs [lindex $rest 1]; set rest [lrange $rest 2 end] } \
        else { set rest [lrange $rest 1 end] }
    }
    if {$pairs eq ""} { set pairs [lrange $rest 0 1]; set rest [lrange $rest 2 end] }
    foreach obj [lindex $rest 0] {
        foreach {k v} $pairs { set ::stub_props($obj,[string toupper $k]) $v }
    }
    return ""
}
proc pl_clk_hz {} {
    # the ZCU102 IOPLL runs at 1499.985 MHz; pl_clk0 is it divided by an integer
    set mhz $::stub_props(/zynq_ps,CONFIG.PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ)
    set div [expr {max(1, round(1499.985 / $mhz))}]
    return [expr {round(1499.985e6 / $div)}]
}
stub get_property {
    lassign $args name obj
    set key $obj,[string toupper $name]
    if {[info exists ::stub_props($key)]} { return $::stub_props($key) }
    switch -glob -- [string toupper $name],$obj {
        CONFIG.FREQ_HZ,/zynq_ps/pl_clk0 { return [pl_clk_hz] }
        SLACK,setup* { return [env_or SPVIT_STUB_WNS 0.112] }
        SLACK,hold* { return [env_or SPVIT_STUB_WHS 0.010] }
        PROGRESS,* { return 100% }
        DIRECTORY,* { return [file join $::stub_proj_dir spvit.runs $obj] }
        NAME,* { return [file tail $obj] }
        OFFSET,* - RANGE,* {
            foreach a $::stub_assigned { if {[lindex $a 0] eq $obj} {
                return [lindex $a [expr {[string toupper $name] eq "OFFSET" ? 1 : 2}]] } }
        }
    }
    error "stub get_property: no property $name of $obj"
}

# ---- block design
stub create_bd_design { return [lindex $args 0] }
stub create_bd_cell { return [path [lindex $args end]] }
stub apply_bd_automation { return "" }
stub get_bd_cells { return [lmap p $args {path $p}] }
stub get_bd_pins { return [path [lindex $args end]] }
stub get_bd_intf_pins { return [path [lindex $args end]] }
stub get_bd_addr_spaces { return [path [lindex $args end]] }
stub connect_bd_intf_net { lappend ::stub_intf_nets $args; return "" }
stub connect_bd_net { return "" }
stub get_bd_addr_segs {
    if {[lindex $args 0] ne "-of_objects"} { return [path [lindex $args end]] }
    set obj [lindex $args 1]
    if {[regexp {^/spvit_0/s_axil$} $obj]} { return $obj/reg0 }
    return [lmap a $::stub_assigned {expr {[string match $obj/* [lindex $a 0]] ? [lindex $a 0] : [continue]}}]
}
stub assign_bd_address {
    if {$args eq ""} {
        # every accelerator master connected to an HP port sees that port's DDR windows
        foreach net $::stub_intf_nets {
            lassign $net master slave
            if {[regexp {^/spvit_0/(m_axi\d+)$} $master -> m] && [regexp {S_AXI_(HP\d)_FPD} $slave -> hp]} {
                lappend ::stub_assigned [list /spvit_0/$m/SEG_zynq_ps_${hp}_DDR_LOW 0x0000000000 2G]
                lappend ::stub_assigned [list /spvit_0/$m/SEG_zynq_ps_${hp}_DDR_HIGH 0x0800000000 32G]
            }
        }
        return ""
    }
    set opts(-offset) ""; set opts(-range) ""; set opts(-target_address_space) ""
    set segs {}
    for {set i 0} {$i < [llength $args]} {incr i} {
        set a [lindex $args $i]
        if {$a eq "-force"} { continue }
        if {[string index $a 0] eq "-"} { set opts($a) [lindex $args [incr i]] } else { lappend segs {*}$a }
    }
    foreach s $segs {
        set name SEG_[string map {/ _} [string trimleft [file dirname [file dirname $s]] /]]_[file tail $s]
        lappend ::stub_assigned [list $opts(-target_address_space)/$name $opts(-offset) $opts(-range)]
    }
    return ""
}
stub validate_bd_design { return "" }
stub save_bd_design { return "" }
stub get_files { return [file join $::stub_proj_dir spvit.srcs sources_1 bd spvit [lindex $args end]] }
stub generate_target {
    touch [file join $::stub_proj_dir spvit.gen sources_1 bd spvit hw_handoff spvit.hwh] "stub hwh"
    return ""
}
stub make_wrapper { return [file join $::stub_proj_dir spvit.gen sources_1 bd spvit hdl spvit_wrapper.v] }

# ---- runs, reports, outputs
stub get_runs { return [lindex $args end] }
stub launch_runs {
    if {[lindex $args 0] eq "impl_1"} { touch [file join $::stub_proj_dir spvit.runs impl_1 spvit_wrapper.bit] "stub bit" }
    return ""
}
stub wait_on_run { return "" }
stub open_run { return "" }
stub get_timing_paths { return [expr {"-hold" in $args ? "hold_path" : "setup_path"}] }
foreach report {report_timing_summary report_utilization report_design_analysis write_hw_platform} {
    stub $report { touch [lindex $args [expr {[lsearch $args -file] + 1}]] "stub"; return "" }
}

# ---- IP packaging
proc wrapper_interfaces {} {
    set names {}
    foreach f $::stub_sources {
        set fd [open $f]; set text [read $fd]; close $fd
        foreach {- name} [regexp -all -inline {X_INTERFACE_INFO = "\S+ (\S+) \S+"} $text] {
            if {$name ni $names} { lappend names $name }
        }
    }
    return $names
}
stub ipx::package_project { return "" }
stub ipx::current_core { return core }
stub ipx::get_bus_interfaces { return [expr {[lindex $args 0] in [wrapper_interfaces] ? [lindex $args 0] : ""}] }
stub ipx::get_memory_maps { return [lindex $args 0] }
stub ipx::add_memory_map { return [lindex $args 0] }
stub ipx::get_address_blocks { return reg0 }
stub ipx::remove_address_block { return "" }
stub ipx::add_address_block { return [lindex $args 1]/[lindex $args 0] }
stub ipx::add_register { return [lindex $args 1]/[lindex $args 0] }
stub ipx::add_field { return [lindex $args 1]/[lindex $args 0] }
stub ipx::create_xgui_files { return "" }
stub ipx::update_checksums { return "" }
stub ipx::check_integrity { return "" }
stub ipx::save_core { return "" }

source $stub_script
close $stub_fd
