# ---------------------------------------------------------------- the flow (rtl_gen/board/tcl/build.tcl)
# Everything above this line is the configuration `spvit board` wrote; everything below is the same
# for every configuration.
set here [file dirname [file normalize [info script]]]
set jobs 4
foreach {key value} $argv {
    switch -- $key {
        --jobs { set jobs $value }
        default { puts "spvit: build.tcl takes `-tclargs --jobs N` (got $argv)"; exit 2 }
    }
}

proc say {text} { puts "spvit: $text" }
proc fail {text} { puts "spvit: FAILED: $text"; exit 1 }
proc latest_ip {name} {
    set defs [lsort -dictionary [get_ipdefs -all "xilinx.com:ip:${name}:*"]]
    if {[llength $defs] == 0} { fail "IP $name is not in this Vivado's IP catalog (written for Vivado $::vivado_versions)" }
    return [lindex $defs end]
}
proc json_string {text} { return "\"[string map {\\ \\\\ \" \\\"} $text]\"" }

# ---- project: the ZCU102's part, its board preset when the board files are installed
foreach old {spvit.bit spvit.hwh spvit.xsa address_map.json} { file delete -force [file join $here $old] }
set proj_dir [file join $here vivado]
create_project -force spvit $proj_dir -part $part
set board ""
if {$board_pattern ne ""} {
    set board [lindex [get_board_parts -quiet -latest_file_version $board_pattern] 0]
    if {$board eq ""} {
        fail "no board files match $board_pattern: the PS's DDR, MIO and clock settings come from the ZCU102 board\
              preset; install the ZCU102 board files, or generate for another part (spvit board --part) and\
              configure its PS yourself"
    }
    set_property board_part $board [current_project]
    say "board $board"
}
add_files -norecurse [lmap f $sources {file join $here $f}]
add_files -fileset constrs_1 -norecurse [file join $here constraints.xdc]
update_compile_order -fileset sources_1

# ---- block design: PS, the accelerator (module reference of the wrapper), SmartConnect, reset
create_bd_design spvit
set ps [create_bd_cell -type ip -vlnv [latest_ip zynq_ultra_ps_e] zynq_ps]
if {$board ne ""} {
    apply_bd_automation -rule xilinx.com:bd_rule:zynq_ultra_ps_e -config {apply_board_preset "1"} $ps
}
set config [list CONFIG.PSU__USE__M_AXI_GP0 1 CONFIG.PSU__MAXIGP0__DATA_WIDTH 32 CONFIG.PSU__USE__M_AXI_GP1 0 \
                 CONFIG.PSU__USE__M_AXI_GP2 0 CONFIG.PSU__FPGA_PL0_ENABLE 1 \
                 CONFIG.PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ $clock_mhz CONFIG.PSU__USE__IRQ0 1]
foreach hp $hp_ports {
    lassign $hp master pin hp_clock enable width
    if {$master eq ""} {
        lappend config CONFIG.$enable 0
    } else {
        lappend config CONFIG.$enable 1 CONFIG.$width $axi_bits
    }
}
set_property -dict $config $ps
set pl_clk_hz [get_property CONFIG.FREQ_HZ [get_bd_pins zynq_ps/pl_clk0]]
say "pl_clk0: $clock_mhz MHz requested, the PS PLL makes [format %.3f [expr {$pl_clk_hz / 1e6}]] MHz\
     (constraints.xdc signs timing off at $clock_mhz MHz)"

create_bd_cell -type module -reference $top $cell
set_property CONFIG.FREQ_HZ $pl_clk_hz [get_bd_pins $cell/$clock]
set smc [create_bd_cell -type ip -vlnv [latest_ip smartconnect] csr_interconnect]
set_property -dict [list CONFIG.NUM_SI 1 CONFIG.NUM_MI 1] $smc
create_bd_cell -type ip -vlnv [latest_ip proc_sys_reset] pl_reset

connect_bd_intf_net [get_bd_intf_pins zynq_ps/M_AXI_HPM0_FPD] [get_bd_intf_pins csr_interconnect/S00_AXI]
connect_bd_intf_net [get_bd_intf_pins csr_interconnect/M00_AXI] [get_bd_intf_pins $cell/$csr]
set clock_pins [list zynq_ps/pl_clk0 zynq_ps/maxihpm0_fpd_aclk csr_interconnect/aclk pl_reset/slowest_sync_clk \
                     $cell/$clock]
foreach hp $hp_ports {
    lassign $hp master pin hp_clock
    if {$master ne ""} {
        connect_bd_intf_net [get_bd_intf_pins $cell/$master] [get_bd_intf_pins zynq_ps/$pin]
        lappend clock_pins zynq_ps/$hp_clock
    }
}
connect_bd_net {*}[lmap p $clock_pins {get_bd_pins $p}]
connect_bd_net [get_bd_pins zynq_ps/pl_resetn0] [get_bd_pins pl_reset/ext_reset_in]
connect_bd_net [get_bd_pins pl_reset/peripheral_aresetn] [get_bd_pins csr_interconnect/aresetn] \
               [get_bd_pins $cell/$reset]
connect_bd_net [get_bd_pins $cell/$irq] [get_bd_pins zynq_ps/$ps_irq]

# ---- address map: the CSR window where the generator put it, every master sees the PS DDR
assign_bd_address -target_address_space [get_bd_addr_spaces zynq_ps/Data] -offset $csr_base -range $csr_range \
    [get_bd_addr_segs -of_objects [get_bd_intf_pins $cell/$csr]] -force
assign_bd_address
set csr_seg ""
foreach seg [get_bd_addr_segs -of_objects [get_bd_addr_spaces zynq_ps/Data]] {
    if {[string match *${cell}* [get_property NAME $seg]]} { set csr_seg $seg }
}
if {$csr_seg eq ""} { fail "the CSR window of $cell/$csr was not assigned in zynq_ps/Data" }
set csr_offset [get_property OFFSET $csr_seg]
if {$csr_offset != $csr_base} { fail "the CSR window lies at $csr_offset, not at $csr_base" }
say "CSR base $csr_offset, range [get_property RANGE $csr_seg] (address_map.json)"
set out [open [file join $here address_map.json] w]
puts $out "\{\n \"format\": \"spvit-address-map\",\n \"vivado\": [json_string [version -short]],"
puts $out " \"pl_clk0_hz\": $pl_clk_hz,"
puts $out " \"csr\": \{\"interface\": [json_string $csr], \"segment\": [json_string [get_property NAME $csr_seg]],\
          \"offset\": [json_string $csr_offset], \"range\": [json_string [get_property RANGE $csr_seg]]\},"
set masters {}
foreach hp $hp_ports {
    set master [lindex $hp 0]
    if {$master eq ""} { continue }
    set segs {}
    foreach seg [get_bd_addr_segs -of_objects [get_bd_addr_spaces $cell/$master]] {
        lappend segs "\{\"segment\": [json_string [get_property NAME $seg]], \"offset\":\
                      [json_string [get_property OFFSET $seg]], \"range\": [json_string [get_property RANGE $seg]]\}"
    }
    lappend masters "  [json_string $master]: \[[join $segs {, }]\]"
}
puts $out " \"masters\": \{\n[join $masters ",\n"]\n \}\n\}"
close $out

# ---- validate, synthesise, implement, bitstream
validate_bd_design
save_bd_design
set bd_file [get_files spvit.bd]
generate_target all $bd_file
add_files -norecurse [make_wrapper -files $bd_file -top]
set_property top spvit_wrapper [current_fileset]
update_compile_order -fileset sources_1
launch_runs synth_1 -jobs $jobs
wait_on_run synth_1
if {[get_property PROGRESS [get_runs synth_1]] ne "100%"} {
    fail "synthesis did not finish: see [get_property DIRECTORY [get_runs synth_1]]/runme.log"
}
launch_runs impl_1 -to_step write_bitstream -jobs $jobs
wait_on_run impl_1
if {[get_property PROGRESS [get_runs impl_1]] ne "100%"} {
    fail "implementation did not finish: see [get_property DIRECTORY [get_runs impl_1]]/runme.log"
}

# ---- reports, timing sign-off, outputs
open_run impl_1
set reports [file join $here reports]
file mkdir $reports
report_timing_summary -max_paths 20 -report_unconstrained -file [file join $reports timing_summary.rpt]
report_utilization -file [file join $reports utilization.rpt]
report_utilization -hierarchical -file [file join $reports utilization_hierarchical.rpt]
report_design_analysis -logic_level_distribution -file [file join $reports logic_levels.rpt]
set wns [get_property SLACK [get_timing_paths -max_paths 1 -nworst 1 -setup]]
set whs [get_property SLACK [get_timing_paths -max_paths 1 -nworst 1 -hold]]
say "timing at $clock_mhz MHz: WNS $wns ns, WHS $whs ns (reports/timing_summary.rpt)"
if {$wns eq "" || $whs eq ""} { fail "no timing paths found: the design is not constrained as expected" }
if {$wns < 0 || $whs < 0} {
    fail "timing NOT met at $clock_mhz MHz (WNS $wns ns, WHS $whs ns); spvit.bit was not written. Regenerate for a\
          lower clock (spvit board --clock-mhz ...) and see reports/timing_summary.rpt, reports/logic_levels.rpt"
}
set bit [file join [get_property DIRECTORY [get_runs impl_1]] spvit_wrapper.bit]
set hwh [lindex [glob -nocomplain [file join $proj_dir spvit.gen sources_1 bd spvit hw_handoff spvit.hwh] \
                                  [file join $proj_dir spvit.srcs sources_1 bd spvit hw_handoff spvit.hwh]] 0]
if {$hwh eq ""} { fail "the block design's hardware handoff spvit.hwh was not found under $proj_dir" }
file copy -force $bit [file join $here spvit.bit]
file copy -force $hwh [file join $here spvit.hwh]
write_hw_platform -fixed -include_bit -force -file [file join $here spvit.xsa]
say "timing met; wrote spvit.bit, spvit.hwh (PYNQ), spvit.xsa (PetaLinux), address_map.json, reports/ in $here"
