# ---------------------------------------------------------------- packaging (rtl_gen/board/tcl/package_ip.tcl)
# Everything above this line is the configuration `spvit board` wrote; everything below is the same
# for every configuration. The IP's interfaces come from the wrapper's X_INTERFACE_INFO attributes;
# its CSR interface gets the register map (spvit_regs.json) as its address block.
set here [file dirname [file normalize [info script]]]

proc say {text} { puts "spvit: $text" }
proc fail {text} { puts "spvit: FAILED: $text"; exit 1 }

create_project -force spvit_ip [file join $here ip_project] -part $part
add_files -norecurse [lmap f $sources {file join $here $f}]
set_property top $top [current_fileset]
update_compile_order -fileset sources_1
ipx::package_project -root_dir [file join $here ip] -vendor $ip_vendor -library $ip_library -taxonomy /UserIP \
    -import_files -set_current true
set core [ipx::current_core]
set_property name $top $core
set_property version $ip_version $core
set_property display_name $ip_display_name $core
set_property description $ip_description $core
set_property supported_families {zynquplus Production} $core

foreach busif $interfaces {
    if {[ipx::get_bus_interfaces $busif -of_objects $core] eq ""} {
        fail "interface $busif was not inferred from the wrapper's X_INTERFACE_INFO attributes"
    }
}

# ---- the register map: one address block of the CSR interface's memory map
set map [ipx::get_memory_maps $csr -of_objects $core]
if {$map eq ""} {
    set map [ipx::add_memory_map $csr $core]
    set_property slave_memory_map_ref $csr [ipx::get_bus_interfaces $csr -of_objects $core]
}
foreach block [ipx::get_address_blocks -of_objects $map] {
    ipx::remove_address_block [get_property name $block] $map
}
set block [ipx::add_address_block registers $map]
set_property range $csr_bytes $block
set_property width 32 $block
set_property usage register $block
foreach register $registers {
    lassign $register name offset access description fields
    set reg [ipx::add_register $name $block]
    set_property address_offset $offset $reg
    set_property size 32 $reg
    set_property description $description $reg
    foreach field $fields {
        lassign $field field_name lsb bits field_access field_description write_value
        set f [ipx::add_field $field_name $reg]
        set_property bit_offset $lsb $f
        set_property bit_width $bits $f
        set_property access $field_access $f
        set_property description $field_description $f
        if {$write_value ne ""} { set_property modified_write_value $write_value $f }
    }
}

ipx::create_xgui_files $core
ipx::update_checksums $core
ipx::check_integrity $core
ipx::save_core $core
close_project
say "packaged $ip_vendor:$ip_library:$top:$ip_version in [file join $here ip] ([llength $registers] registers)"
